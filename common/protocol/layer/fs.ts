/**
 * LP's remote file messages (docs/protocol.md section 1, "Files"): types 0x20..0x2f. Status: 0 ok,
 * 1 bypass (the layer calls libc with the original arguments), < 0 a negative errno. Offsets are
 * u64; FS_APPEND as a write offset means "at the end".
 */
import { fileStatSchema, type FileStat } from '../stat.js';
import { LpProtocolError, RESPONSE, Reader, Writer, type LpFrame } from './codec.js';

export const FS_TYPES = {
  open: 0x20,
  read: 0x21,
  write: 0x22,
  close: 0x23,
  stat: 0x24,
  access: 0x25,
  readlink: 0x26,
  getdents: 0x27,
  mkdir: 0x28,
  unlink: 0x29,
  rename: 0x2a,
} as const;
export type FsKind = keyof typeof FS_TYPES;
const FS_KIND_OF = new Map<number, FsKind>(Object.entries(FS_TYPES).map(([k, v]) => [v, k as FsKind]));
/** Largest payload a READ response or a WRITE request carries (a frame is at most 64 KiB). */
export const FS_MAX_IO = 60 * 1024;
export const FS_APPEND = -1;
/** Size of the stat block on the wire. */
export const FS_STAT_SIZE = 96;

export interface FsDirent {
  ino: number;
  type: number;
  name: string;
}

export type FsRequest =
  | { id: number; kind: 'open'; path: string; flags: number; mode: number }
  | { id: number; kind: 'read'; handle: number; offset: number; len: number }
  | { id: number; kind: 'write'; handle: number; offset: number; data: Buffer }
  | { id: number; kind: 'close'; handle: number }
  | { id: number; kind: 'stat'; path: string; flags: number; handle: number }
  | { id: number; kind: 'access'; path: string; mode: number }
  | { id: number; kind: 'readlink'; path: string }
  | { id: number; kind: 'getdents'; handle: number }
  | { id: number; kind: 'mkdir'; path: string; mode: number }
  | { id: number; kind: 'unlink'; path: string; flags: number }
  | { id: number; kind: 'rename'; path: string; path2: string };

export type FsResponse =
  | { id: number; kind: 'open'; status: number; handle: number; stat: FileStat }
  | { id: number; kind: 'read'; status: number; data: Buffer }
  | { id: number; kind: 'write'; status: number; written: number; offset: number }
  | { id: number; kind: 'stat'; status: number; stat: FileStat }
  | { id: number; kind: 'readlink'; status: number; target: string }
  | { id: number; kind: 'getdents'; status: number; entries: FsDirent[] }
  | { id: number; kind: 'close' | 'access' | 'mkdir' | 'unlink' | 'rename'; status: number };

/** Every field 0: the stat of a failed or bypassed response. */
export const FS_ZERO_STAT: Readonly<FileStat> = Object.freeze(Object.fromEntries(Object.keys(fileStatSchema.shape).map((k) => [k, 0])) as FileStat);

/** A request or response type of this family. */
export function isFsType(type: number): boolean {
  return FS_KIND_OF.has(type & ~RESPONSE);
}

function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v === FS_APPEND ? 0xffffffffffffffffn : BigInt(v));
  return b;
}
function i64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(v));
  return b;
}
function readU64(r: Reader): number {
  const v = r.bytes(8).readBigUInt64LE(0);
  if (v === 0xffffffffffffffffn) return FS_APPEND;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new LpProtocolError('u64 beyond 2^53');
  return Number(v);
}
function readI64(r: Reader): number {
  return Number(r.bytes(8).readBigInt64LE(0));
}

/** The 96-byte block, in wire order (FS_STAT_SIZE). */
function putStat(w: Writer, s: FileStat): Writer {
  return w
    .bytes(u64(s.dev))
    .bytes(u64(s.ino))
    .u32(s.mode)
    .u32(s.nlink)
    .u32(s.uid)
    .u32(s.gid)
    .bytes(u64(s.rdev))
    .bytes(i64(s.size))
    .u32(s.blksize)
    .bytes(i64(s.blocks))
    .bytes(i64(s.atimeSec))
    .u32(s.atimeNsec)
    .bytes(i64(s.mtimeSec))
    .u32(s.mtimeNsec)
    .bytes(i64(s.ctimeSec))
    .u32(s.ctimeNsec);
}
function getStat(r: Reader): FileStat {
  return {
    dev: readU64(r),
    ino: readU64(r),
    mode: r.u32(),
    nlink: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    rdev: readU64(r),
    size: readI64(r),
    blksize: r.u32(),
    blocks: readI64(r),
    atimeSec: readI64(r),
    atimeNsec: r.u32(),
    mtimeSec: readI64(r),
    mtimeNsec: r.u32(),
    ctimeSec: readI64(r),
    ctimeNsec: r.u32(),
  };
}
function putData(w: Writer, d: Buffer): Writer {
  if (d.length > FS_MAX_IO) throw new LpProtocolError(`${d.length} bytes of data exceed ${FS_MAX_IO}`);
  return w.u32(d.length).bytes(d);
}
function getData(r: Reader): Buffer {
  const n = r.u32();
  if (n > FS_MAX_IO) throw new LpProtocolError(`${n} bytes of data exceed ${FS_MAX_IO}`);
  return Buffer.from(r.bytes(n));
}

export function encodeFsRequest(q: FsRequest): Buffer {
  const w = new Writer();
  switch (q.kind) {
    case 'open':
      w.str(q.path).u32(q.flags).u32(q.mode);
      break;
    case 'read':
      w.u32(q.handle).bytes(u64(q.offset)).u32(q.len);
      break;
    case 'write':
      w.u32(q.handle).bytes(u64(q.offset));
      putData(w, q.data);
      break;
    case 'close':
    case 'getdents':
      w.u32(q.handle);
      break;
    case 'stat':
      w.str(q.path).u32(q.flags).u32(q.handle);
      break;
    case 'access':
    case 'mkdir':
      w.str(q.path).u32(q.mode);
      break;
    case 'readlink':
      w.str(q.path);
      break;
    case 'unlink':
      w.str(q.path).u32(q.flags);
      break;
    case 'rename':
      w.str(q.path).str(q.path2);
      break;
  }
  return w.frame(q.id, FS_TYPES[q.kind]);
}

export function encodeFsResponse(s: FsResponse): Buffer {
  const w = new Writer().i32(s.status);
  switch (s.kind) {
    case 'open':
      putStat(w.u32(s.handle), s.stat);
      break;
    case 'read':
      putData(w, s.data);
      break;
    case 'write':
      w.u32(s.written).bytes(u64(s.offset));
      break;
    case 'stat':
      putStat(w, s.stat);
      break;
    case 'readlink':
      w.str(s.target);
      break;
    case 'getdents':
      w.u16(s.entries.length);
      for (const e of s.entries) w.bytes(u64(e.ino)).u8(e.type).str(e.name);
      break;
    default:
      break;
  }
  return w.frame(s.id, FS_TYPES[s.kind] | RESPONSE);
}

export function decodeFsRequest(f: LpFrame): FsRequest {
  const kind = FS_KIND_OF.get(f.type);
  if (!kind) throw new LpProtocolError(`unknown request type 0x${f.type.toString(16)}`);
  const r = new Reader(f.payload);
  const id = f.id;
  let q: FsRequest;
  switch (kind) {
    case 'open':
      q = { id, kind, path: r.str(), flags: r.u32(), mode: r.u32() };
      break;
    case 'read':
      q = { id, kind, handle: r.u32(), offset: readU64(r), len: r.u32() };
      break;
    case 'write':
      q = { id, kind, handle: r.u32(), offset: readU64(r), data: getData(r) };
      break;
    case 'close':
    case 'getdents':
      q = { id, kind, handle: r.u32() };
      break;
    case 'stat':
      q = { id, kind, path: r.str(), flags: r.u32(), handle: r.u32() };
      break;
    case 'access':
    case 'mkdir':
      q = { id, kind, path: r.str(), mode: r.u32() };
      break;
    case 'readlink':
      q = { id, kind, path: r.str() };
      break;
    case 'unlink':
      q = { id, kind, path: r.str(), flags: r.u32() };
      break;
    case 'rename':
      q = { id, kind, path: r.str(), path2: r.str() };
      break;
  }
  r.end();
  return q;
}

export function decodeFsResponse(f: LpFrame): FsResponse {
  const kind = FS_KIND_OF.get(f.type & ~RESPONSE);
  if (!kind || !(f.type & RESPONSE)) throw new LpProtocolError(`unknown response type 0x${f.type.toString(16)}`);
  const r = new Reader(f.payload);
  const id = f.id;
  const status = r.i32();
  let s: FsResponse;
  switch (kind) {
    case 'open':
      s = { id, kind, status, handle: r.u32(), stat: getStat(r) };
      break;
    case 'read':
      s = { id, kind, status, data: getData(r) };
      break;
    case 'write':
      s = { id, kind, status, written: r.u32(), offset: readU64(r) };
      break;
    case 'stat':
      s = { id, kind, status, stat: getStat(r) };
      break;
    case 'readlink':
      s = { id, kind, status, target: r.str() };
      break;
    case 'getdents': {
      const n = r.u16();
      const entries: FsDirent[] = [];
      for (let i = 0; i < n; i++) entries.push({ ino: readU64(r), type: r.u8(), name: r.str() });
      s = { id, kind, status, entries };
      break;
    }
    default:
      s = { id, kind, status };
      break;
  }
  r.end();
  return s;
}
