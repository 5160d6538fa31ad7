import { writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * A kubeconfig passed as a secret (Codespaces secrets arrive as environment variables): base64 of
 * the file, or the file itself. Written to `file` (mode 0600) for the session to use.
 */
export function kubeconfigFromSecret(name: string, env: NodeJS.ProcessEnv, file: string): string {
  const raw = env[name];
  if (!raw) throw new MirrordError(`the secret ${name} is not set`, ExitCode.Config, `Add ${name} (a base64 kubeconfig) to the dev container's secrets`);
  const text = /^\s*apiVersion:/m.test(raw) ? raw : Buffer.from(raw.trim(), 'base64').toString('utf8');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    doc = undefined;
  }
  const d = doc as { clusters?: unknown; contexts?: unknown } | undefined;
  if (!d || typeof d !== 'object' || !Array.isArray(d.clusters) || !Array.isArray(d.contexts)) {
    throw new MirrordError(
      `the secret ${name} is not a kubeconfig (base64 of a file with clusters and contexts)`,
      ExitCode.Config,
      `Set it to the output of: base64 -w0 ~/.kube/config`,
    );
  }
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}
