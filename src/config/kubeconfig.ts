import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * The `kubeconfig` key as mirrord reads it: each entry of a colon-separated list (as KUBECONFIG)
 * with `~` and `$VAR` / `${VAR}` expanded the way a shell would. The Kubernetes client here reads
 * one file, so a list becomes its first entry that exists (or its first entry, so the error names
 * it); kubectl would merge them (docs/configuration.md says so).
 */
export function expandKubeconfig(value: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const entries = value
    .split(path.delimiter)
    .filter((e) => e !== '')
    .map((e) => path.resolve(cwd, expandOne(e, env)));
  if (entries.length === 0) {
    throw new MirrordError('kubeconfig: the value is empty', ExitCode.Config, 'Set kubeconfig to a file, or remove the key to use KUBECONFIG');
  }
  return entries.find((e) => existsSync(e)) ?? entries[0]!;
}

function expandOne(entry: string, env: NodeJS.ProcessEnv): string {
  const home = env.HOME || os.homedir();
  const withHome = entry === '~' ? home : entry.startsWith('~/') ? path.join(home, entry.slice(2)) : entry;
  return withHome.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    const v = env[name];
    if (v === undefined) {
      throw new MirrordError(
        `kubeconfig: $${name} is not set (in ${JSON.stringify(entry)})`,
        ExitCode.Config,
        `Set ${name}, or write the path out in the kubeconfig key`,
      );
    }
    return v;
  });
}
