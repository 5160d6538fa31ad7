/**
 * Safe path resolution under the target's root (what openat2's RESOLVE_IN_ROOT does, which Node
 * cannot call): every component is walked here with lstat/readlink; an absolute symlink restarts
 * from the target's root, `..` never climbs above it, and the result is a host path below `root`
 * whose every component but the last is a real directory (no symlink). The last component is a
 * symlink only when `followLast` is false; callers then open it with O_NOFOLLOW.
 */
import { lstat, readlink } from 'node:fs/promises';

const MAX_LINKS = 40; // as Linux (ELOOP)

const fail = (code: string, message: string) => Object.assign(new Error(message), { code });

export interface Resolved {
  /** Host path to use (root + clean components). */
  host: string;
  /** The same path as the target sees it. */
  inside: string;
  /** The last component does not exist (creating it is possible: its parent does). */
  missing: boolean;
}

export async function resolveInRoot(root: string, path: string, followLast: boolean): Promise<Resolved> {
  if (!path.startsWith('/')) throw fail('EINVAL', 'paths must be absolute');
  if (path.includes('\0')) throw fail('EINVAL', 'path contains NUL');
  const done: string[] = [];
  let todo = path.split('/').filter((c) => c !== '' && c !== '.');
  let links = 0;
  const hostOf = (parts: string[]) => (parts.length ? `${root}/${parts.join('/')}` : root);
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '.') continue;
    if (c === '..') {
      done.pop(); // at the root, `..` is the root
      continue;
    }
    const last = todo.length === 0;
    const candidate = hostOf([...done, c]);
    let st;
    try {
      st = await lstat(candidate);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && last) return { host: candidate, inside: `/${[...done, c].join('/')}`, missing: true };
      throw err;
    }
    if (st.isSymbolicLink() && (!last || followLast)) {
      if (++links > MAX_LINKS) throw fail('ELOOP', 'too many levels of symbolic links');
      const target = await readlink(candidate);
      const parts = target.split('/').filter((x) => x !== '' && x !== '.');
      if (target.startsWith('/')) done.length = 0; // absolute: from the target's root, not ours
      todo = [...parts, ...todo];
      continue;
    }
    if (!last && !st.isDirectory()) throw fail('ENOTDIR', `${c} is not a directory`);
    done.push(c);
  }
  return { host: hostOf(done), inside: `/${done.join('/')}`, missing: false };
}
