import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A recipe's tag (recipeTag: a hash of every file of the image, about 5 MB for the agent's) kept from
 * one start to the next under `$TMPDIR/mirrord-UID/tags/`, keyed by what `stat` says of those files
 * (path, size, modification and change times, inode) and the recipe's other inputs (`salt`). A warm
 * join needs only the tag, to find the shared agent by its image: with this it stats the files
 * instead of reading and hashing them (about 15 CPU ms of every start, bench:start). Any change to a
 * file (a rebuild, a reinstall) changes its stat and so the key; a missing or unreadable cache, or a
 * directory that is not this user's alone, means the tag is computed as before (`compute`).
 */
export function cachedTag(files: string[], salt: string, compute: () => string, dir: string | undefined = cacheDir()): string {
  let key: string;
  try {
    const h = createHash('sha256').update(salt);
    for (const f of files) {
      const st = statSync(f, { bigint: true });
      h.update(`\n${f}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0${st.ino}`);
    }
    key = h.digest('hex').slice(0, 32);
  } catch {
    return compute(); // a file is missing: compute() reports it as it always has
  }
  const file = dir && path.join(dir, key);
  if (file) {
    try {
      const tag = readFileSync(file, 'utf8').trim();
      if (tag) return tag;
    } catch {
      // not cached yet
    }
  }
  const tag = compute();
  if (file) {
    try {
      const tmp = `${file}.${process.pid}`;
      writeFileSync(tmp, `${tag}\n`, { mode: 0o600 });
      renameSync(tmp, file);
    } catch {
      // a cache that cannot be written costs the hash next time, nothing else
    }
  }
  return tag;
}

/** `$TMPDIR/mirrord-UID/tags`, when the top directory is this user's, 0700 and not a symlink; else none. */
function cacheDir(): string | undefined {
  const uid = process.getuid?.();
  if (uid === undefined) return undefined;
  try {
    const top = path.join(os.tmpdir(), `mirrord-${uid}`);
    mkdirSync(top, { mode: 0o700, recursive: true });
    const st = lstatSync(top);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) return undefined;
    const dir = path.join(top, 'tags');
    mkdirSync(dir, { mode: 0o700, recursive: true });
    return dir;
  } catch {
    return undefined;
  }
}
