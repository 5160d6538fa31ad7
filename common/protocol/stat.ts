/**
 * A file's stat, the one shape both protocols carry: AP's `fs.open`/`fs.stat`/`fs.fstat` results
 * (JSON, docs/protocol.md section 2) and LP's 96-byte `stat` block (section 1, "Files"), so the
 * intproxy hands the agent's answer to the layer as is. Times are seconds + nanoseconds.
 */
import * as z from 'zod/mini';

const n = z.number();
export const fileStatSchema = z.object({
  dev: n,
  ino: n,
  mode: n,
  nlink: n,
  uid: n,
  gid: n,
  rdev: n,
  size: n,
  blksize: n,
  blocks: n,
  atimeSec: n,
  atimeNsec: n,
  mtimeSec: n,
  mtimeNsec: n,
  ctimeSec: n,
  ctimeNsec: n,
});
export type FileStat = z.infer<typeof fileStatSchema>;
