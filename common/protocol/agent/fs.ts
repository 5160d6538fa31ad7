/**
 * AP's remote file methods, fs.* (docs/protocol.md section 2, "Methods"). Paths are absolute paths
 * inside the target; the agent resolves them itself under the target's root (never following a
 * symlink out of it). `fd` is the agent's handle for an open file or directory, valid on this link
 * only. fs.read's bytes travel raw in the RESPONSE's binary form; fs.write's data is base64.
 */
import { absPath, bool, int, nonZeroU32, params, u32, str, type MethodTable } from './params.js';
import type { FileStat } from '../stat.js';

/** Most bytes one fs.read returns (and, base64-decoded, one fs.write carries). */
export const AP_FS_MAX_READ = 512 * 1024;
const fd = nonZeroU32('fd');

export const AP_FILE_PARAMS = {
  /** flags/mode: Linux open(2) values; O_NOFOLLOW is honoured on the last component. */
  'fs.open': params({ path: absPath('path'), flags: u32('flags'), mode: u32('mode') }),
  'fs.read': params({
    fd,
    offset: int(0, Number.MAX_SAFE_INTEGER, 'offset must be an integer 0..2^53-1'),
    len: int(0, AP_FS_MAX_READ, `len must be an integer 0..${AP_FS_MAX_READ}`),
  }),
  /** offset -1: append at the end. */
  'fs.write': params({
    fd,
    offset: int(-1, Number.MAX_SAFE_INTEGER, 'offset must be -1 (append) or an integer 0..2^53-1'),
    data: str(`data must be a base64 string of at most ${AP_FS_MAX_READ * 2} characters`, 0, AP_FS_MAX_READ * 2),
  }),
  'fs.close': params({ fd }),
  'fs.stat': params({ path: absPath('path'), follow: bool('follow') }),
  'fs.fstat': params({ fd }),
  'fs.access': params({ path: absPath('path'), mode: int(0, 7, 'mode must be an access(2) mode 0..7') }),
  'fs.readlink': params({ path: absPath('path') }),
  /** The next entries of a directory opened with fs.open; none left: an empty list. */
  'fs.readdir': params({ fd, max: int(1, 4096, 'max must be an integer 1..4096') }),
  'fs.mkdir': params({ path: absPath('path'), mode: u32('mode') }),
  'fs.unlink': params({ path: absPath('path'), dir: bool('dir') }),
  'fs.rename': params({ from: absPath('from'), to: absPath('to') }),
  /** Mount points of the target (from its mountinfo), for the default rules. */
  'fs.mounts': params({}),
};

export interface ApDirent {
  name: string;
  type: number;
  ino: number;
}
type Empty = Record<string, never>;

export type ApFileMethods = MethodTable<
  typeof AP_FILE_PARAMS,
  {
    'fs.open': { fd: number; stat: FileStat };
    'fs.read': { data: Buffer };
    'fs.write': { written: number; offset: number };
    'fs.close': Empty;
    'fs.stat': { stat: FileStat };
    'fs.fstat': { stat: FileStat };
    'fs.access': Empty;
    'fs.readlink': { target: string };
    'fs.readdir': { entries: ApDirent[] };
    'fs.mkdir': Empty;
    'fs.unlink': Empty;
    'fs.rename': Empty;
    'fs.mounts': { mounts: string[] };
  }
>;
