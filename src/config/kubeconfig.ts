import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * The `kubeconfig` key as mirrord reads it: each entry of a colon-separated list (as KUBECONFIG)
 * with `~` and `$VAR` / `${VAR}` expanded the way a shell would. Entries that do not exist are
 * dropped, as KUBECONFIG's are (all missing: the first stays, so the error names it); the list is
 * merged by loadKubeconfig.
 */
export function expandKubeconfig(value: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const entries = value
    .split(path.delimiter)
    .filter((e) => e !== '')
    .map((e) => path.resolve(cwd, expandOne(e, env)));
  if (entries.length === 0) {
    throw new MirrordError('kubeconfig: the value is empty', ExitCode.Config, 'Set kubeconfig to a file, or remove the key to use KUBECONFIG');
  }
  const existing = entries.filter((e) => existsSync(e));
  return (existing.length ? existing : entries.slice(0, 1)).join(path.delimiter);
}

/** What loadKubeconfig needs of @kubernetes/client-node's KubeConfig. */
interface KubeConfigLike {
  loadFromFile(file: string): void;
  clusters: Array<{ name: string }>;
  users: Array<{ name: string }>;
  contexts: Array<{ name: string }>;
  currentContext: string;
}

/**
 * A colon-separated list merged as kubectl merges KUBECONFIG: the first file to define a cluster,
 * user or context by name wins, and the current context is the first file's that sets one.
 * `make` gives a fresh KubeConfig for each further file.
 */
export function loadKubeconfig<K extends KubeConfigLike>(kc: K, list: string, make: () => K): void {
  const [first, ...rest] = list.split(path.delimiter).filter(Boolean);
  kc.loadFromFile(first!);
  for (const file of rest) {
    const next = make();
    next.loadFromFile(file);
    kc.currentContext ||= next.currentContext;
    for (const key of ['clusters', 'users', 'contexts'] as const) {
      const have = new Set(kc[key].map((e) => e.name));
      for (const e of next[key] as Array<{ name: string }>) if (!have.has(e.name)) (kc[key] as Array<{ name: string }>).push(e);
    }
  }
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

/** A kubeconfig exists where kubectl would look: otherwise the cluster part is skipped, not an error. */
export function kubeConfigured(file?: string): boolean {
  if (file) return true;
  const env = process.env.KUBECONFIG;
  if (env) return env.split(path.delimiter).some((f) => f && existsSync(f));
  return existsSync(path.join(os.homedir(), '.kube', 'config'));
}
