/**
 * `env.get`: the target process's environment as its kernel recorded it at exec time
 * (/proc/PID/environ). Changes the process made later with setenv() are not visible anywhere.
 */
import { readProcFile } from './proc.js';
import { disabledHint } from './settings.js';

export function parseEnviron(raw: Buffer): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of raw.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    // Entries without '=' (or with an empty name) exist in the wild; a program could not read them
    // with getenv() either, so they are skipped.
    if (eq <= 0) continue;
    env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** Fails with the errno code of the read (EACCES when we lack ptrace rights over the target, ENOENT when it is gone). */
export async function readTargetEnv(pid: number, procRoot = '/proc'): Promise<Record<string, string>> {
  try {
    return parseEnviron(await readProcFile(`${procRoot}/${pid}/environ`));
  } catch (err) {
    const hint = (err as NodeJS.ErrnoException).code === 'EACCES' ? disabledHint('SYS_PTRACE') : undefined;
    if (hint) throw Object.assign(new Error(`cannot read the target's environment: ${hint}`), { code: 'EACCES' });
    throw err;
  }
}
