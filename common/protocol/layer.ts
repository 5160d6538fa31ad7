/**
 * LP: the layer <-> intproxy protocol (docs/protocol.md section 1). Little-endian frames:
 * u32 len (bytes after it), u32 id, u16 type, u16 reserved, payload. Pure codec, no I/O.
 * The C side (layer/src/lp_codec.c) is tested against the same vectors
 * (test/vectors/layer-protocol.json), so a change here needs a matching change there.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const LP_VERSION = 1;
export const LP_MAX_FRAME = 65536;

const HEADER = 12;
const RESPONSE = 0x8000;
const T_HELLO = 1;
const T_CONNECT = 2;
const T_GETADDRINFO = 3;
// Incoming traffic (listening sockets): 0x10..0x1f.
const T_LISTEN = 0x10;
const T_ACCEPT = 0x11;
const T_UNLISTEN = 0x12;

export class LpProtocolError extends Error {
  override readonly name = 'LpProtocolError';
}

export interface LpAddr { family: 4 | 6; address: string; port: number }
export interface LpFrame { id: number; type: number; payload: Buffer }

export type LpRequest =
  | FsRequest
  | { id: number; kind: 'hello'; version: number; pid: number; ppid: number; parentPid: number; exe: string }
  | { id: number; kind: 'connect'; proto: 'tcp' | 'udp'; remote: LpAddr }
  | { id: number; kind: 'getaddrinfo'; node: string; family: 0 | 2 | 10 }
  | { id: number; kind: 'listen'; requested: LpAddr; bound: LpAddr }
  | { id: number; kind: 'accept'; peer: LpAddr }
  | { id: number; kind: 'unlisten'; requested: LpAddr };

export type LpResponse =
  | FsResponse
  | { id: number; kind: 'hello'; status: number }
  | { id: number; kind: 'connect'; status: number; via: LpAddr }
  | { id: number; kind: 'getaddrinfo'; status: number; addresses: { family: 4 | 6; address: string }[]; canonname: string }
  | { id: number; kind: 'listen' | 'unlisten'; status: number }
  | { id: number; kind: 'accept'; status: number; remote: LpAddr };

export const LpStatus = { Ok: 0, Bypass: 1 } as const;

/** Splits a byte stream into frames; throws on a length the protocol forbids (caller closes). */
export class LpFrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): LpFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: LpFrame[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32LE(0);
      if (len < HEADER - 4 || len + 4 > LP_MAX_FRAME) {
        throw new LpProtocolError(`frame length ${len} out of bounds`);
      }
      if (this.buf.length < len + 4) break;
      frames.push({
        id: this.buf.readUInt32LE(4),
        type: this.buf.readUInt16LE(8),
        payload: Buffer.from(this.buf.subarray(HEADER, len + 4)),
      });
      this.buf = this.buf.subarray(len + 4);
    }
    return frames;
  }
}

// ---- addresses ------------------------------------------------------------------------------

function ipv4Bytes(text: string): Buffer {
  if (!isIPv4(text)) throw new LpProtocolError(`not an IPv4 address: ${text}`);
  return Buffer.from(text.split('.').map(Number));
}

function ipv6Bytes(text: string): Buffer {
  // A %scope cannot cross to another host: the wire has no room for it.
  if (!isIPv6(text) || text.includes('%')) throw new LpProtocolError(`not an IPv6 address: ${text}`);
  let groups: number[];
  const tail = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  let head = text;
  if (tail?.[1]) {
    const v4 = ipv4Bytes(tail[1]);
    head = text.slice(0, text.length - tail[1].length) + `${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const gap = head.indexOf('::');
  if (gap >= 0) {
    const left = parse(head.slice(0, gap));
    const right = parse(head.slice(gap + 2));
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    groups = parse(head);
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** RFC 5952 text: lower case, longest run of zero groups as '::', IPv4-mapped as ::ffff:a.b.c.d. */
function ipv6Text(b: Buffer): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

function addrBytes(family: 4 | 6, address: string): Buffer {
  const out = Buffer.alloc(16);
  if (family === 4) ipv4Bytes(address).copy(out);
  else if (family === 6) ipv6Bytes(address).copy(out);
  else throw new LpProtocolError(`address family must be 4 or 6, got ${String(family)}`);
  return out;
}

function addrText(family: number, bytes: Buffer): string {
  return family === 4 ? `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}` : ipv6Text(bytes);
}

// ---- writing --------------------------------------------------------------------------------

class Writer {
  private parts: Buffer[] = [];
  u8(v: number): this { return this.int(1, v, 0, 0xff); }
  u16(v: number): this { return this.int(2, v, 0, 0xffff); }
  u32(v: number): this { return this.int(4, v, 0, 0xffffffff); }
  i32(v: number): this { return this.int(4, v, -0x80000000, 0x7fffffff); }
  bytes(b: Buffer): this { this.parts.push(b); return this; }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 0xffff) throw new LpProtocolError(`string of ${b.length} bytes is too long`);
    return this.u16(b.length).bytes(b);
  }
  addr(a: LpAddr): this {
    return this.u8(a.family).bytes(addrBytes(a.family, a.address)).u16(a.port);
  }
  private int(size: number, v: number, min: number, max: number): this {
    if (!Number.isInteger(v) || v < min || v > max) throw new LpProtocolError(`value ${v} out of range`);
    const b = Buffer.alloc(size);
    if (size === 1) b.writeUInt8(v);
    else if (size === 2) b.writeUInt16LE(v);
    else if (min < 0) b.writeInt32LE(v);
    else b.writeUInt32LE(v);
    return this.bytes(b);
  }
  frame(id: number, type: number): Buffer {
    const payload = Buffer.concat(this.parts);
    if (payload.length + HEADER > LP_MAX_FRAME) throw new LpProtocolError('frame too large');
    const head = new Writer().u32(payload.length + HEADER - 4).u32(id).u16(type).u16(0);
    return Buffer.concat([...head.parts, payload]);
  }
}

export function encodeRequest(r: LpRequest): Buffer {
  const w = new Writer();
  switch (r.kind) {
    case 'hello':
      return w.u16(r.version).u32(r.pid).u32(r.ppid).u32(r.parentPid).str(r.exe).frame(r.id, T_HELLO);
    case 'connect':
      return w.u8(r.proto === 'tcp' ? 1 : 2).addr(r.remote).frame(r.id, T_CONNECT);
    case 'getaddrinfo':
      return w.str(r.node).i32(r.family).frame(r.id, T_GETADDRINFO);
    case 'listen':
      return w.addr(r.requested).addr(r.bound).frame(r.id, T_LISTEN);
    case 'accept':
      return w.addr(r.peer).frame(r.id, T_ACCEPT);
    case 'unlisten':
      return w.addr(r.requested).frame(r.id, T_UNLISTEN);
    default:
      if (r.kind in FS_TYPES) return encodeFsRequest(r);
      throw new LpProtocolError(`unknown request kind ${(r as { kind: string }).kind}`);
  }
}

export function encodeResponse(r: LpResponse): Buffer {
  const w = new Writer().i32(r.status);
  switch (r.kind) {
    case 'hello':
      return w.frame(r.id, T_HELLO | RESPONSE);
    case 'connect':
      // Only a handled connect has a meaningful `via`: anything else is sent as zeros.
      return w.addr(r.status === LpStatus.Ok ? r.via : { family: 4, address: '0.0.0.0', port: 0 })
        .frame(r.id, T_CONNECT | RESPONSE);
    case 'getaddrinfo':
      w.u16(r.addresses.length);
      for (const a of r.addresses) w.u8(a.family).bytes(addrBytes(a.family, a.address));
      return w.str(r.canonname).frame(r.id, T_GETADDRINFO | RESPONSE);
    case 'listen':
      return w.frame(r.id, T_LISTEN | RESPONSE);
    case 'unlisten':
      return w.frame(r.id, T_UNLISTEN | RESPONSE);
    case 'accept':
      return w.addr(r.status === LpStatus.Ok ? r.remote : { family: 4, address: '0.0.0.0', port: 0 }).frame(r.id, T_ACCEPT | RESPONSE);
    default:
      if (r.kind in FS_TYPES) return encodeFsResponse(r);
      throw new LpProtocolError(`unknown response kind ${(r as { kind: string }).kind}`);
  }
}

// ---- reading --------------------------------------------------------------------------------

class Reader {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): number {
    if (this.pos + n > this.b.length) throw new LpProtocolError('truncated payload');
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number { return this.b.readUInt8(this.need(1)); }
  u16(): number { return this.b.readUInt16LE(this.need(2)); }
  u32(): number { return this.b.readUInt32LE(this.need(4)); }
  i32(): number { return this.b.readInt32LE(this.need(4)); }
  bytes(n: number): Buffer { const at = this.need(n); return this.b.subarray(at, at + n); }
  str(): string { return this.bytes(this.u16()).toString('utf8'); }
  family(): 4 | 6 {
    const f = this.u8();
    if (f !== 4 && f !== 6) throw new LpProtocolError(`address family must be 4 or 6, got ${f}`);
    return f;
  }
  addr(): LpAddr {
    const family = this.family();
    const address = addrText(family, this.bytes(16));
    return { family, address, port: this.u16() };
  }
  end(): void {
    if (this.pos !== this.b.length) throw new LpProtocolError(`${this.b.length - this.pos} trailing bytes`);
  }
}

export function decodeRequest(f: LpFrame): LpRequest {
  const r = new Reader(f.payload);
  let out: LpRequest;
  switch (f.type) {
    case T_HELLO:
      out = { id: f.id, kind: 'hello', version: r.u16(), pid: r.u32(), ppid: r.u32(), parentPid: r.u32(), exe: r.str() };
      break;
    case T_CONNECT: {
      const p = r.u8();
      if (p !== 1 && p !== 2) throw new LpProtocolError(`unknown connect proto ${p}`);
      out = { id: f.id, kind: 'connect', proto: p === 1 ? 'tcp' : 'udp', remote: r.addr() };
      break;
    }
    case T_GETADDRINFO: {
      const node = r.str();
      const family = r.i32();
      if (family !== 0 && family !== 2 && family !== 10) throw new LpProtocolError(`unknown family ${family}`);
      out = { id: f.id, kind: 'getaddrinfo', node, family };
      break;
    }
    case T_LISTEN:
      out = { id: f.id, kind: 'listen', requested: r.addr(), bound: r.addr() };
      break;
    case T_ACCEPT:
      out = { id: f.id, kind: 'accept', peer: r.addr() };
      break;
    case T_UNLISTEN:
      out = { id: f.id, kind: 'unlisten', requested: r.addr() };
      break;
    default:
      if (isFsType(f.type)) return decodeFsRequest(f);
      throw new LpProtocolError(`unknown request type 0x${f.type.toString(16)}`);
  }
  r.end();
  return out;
}

export function decodeResponse(f: LpFrame): LpResponse {
  const r = new Reader(f.payload);
  let out: LpResponse;
  switch (f.type) {
    case T_HELLO | RESPONSE:
      out = { id: f.id, kind: 'hello', status: r.i32() };
      break;
    case T_CONNECT | RESPONSE:
      out = { id: f.id, kind: 'connect', status: r.i32(), via: r.addr() };
      break;
    case T_GETADDRINFO | RESPONSE: {
      const status = r.i32();
      const count = r.u16();
      const addresses: { family: 4 | 6; address: string }[] = [];
      for (let i = 0; i < count; i++) {
        const family = r.family();
        addresses.push({ family, address: addrText(family, r.bytes(16)) });
      }
      out = { id: f.id, kind: 'getaddrinfo', status, addresses, canonname: r.str() };
      break;
    }
    case T_LISTEN | RESPONSE:
      out = { id: f.id, kind: 'listen', status: r.i32() };
      break;
    case T_UNLISTEN | RESPONSE:
      out = { id: f.id, kind: 'unlisten', status: r.i32() };
      break;
    case T_ACCEPT | RESPONSE:
      out = { id: f.id, kind: 'accept', status: r.i32(), remote: r.addr() };
      break;
    default:
      if (isFsType(f.type)) return decodeFsResponse(f);
      throw new LpProtocolError(`unknown response type 0x${f.type.toString(16)}`);
  }
  r.end();
  return out;
}

// ==== remote files (docs/protocol.md section 1, "Files") =======================================
// Types 0x20..0x2f. Status: 0 ok, 1 bypass (the layer calls libc with the original arguments),
// < 0 a negative errno. Offsets are u64; FS_APPEND as a write offset means "at the end".

export const FS_TYPES = {
  open: 0x20, read: 0x21, write: 0x22, close: 0x23, stat: 0x24, access: 0x25, readlink: 0x26,
  getdents: 0x27, mkdir: 0x28, unlink: 0x29, rename: 0x2a,
} as const;
export type FsKind = keyof typeof FS_TYPES;
const FS_KIND_OF = new Map<number, FsKind>(Object.entries(FS_TYPES).map(([k, v]) => [v, k as FsKind]));
/** Largest payload a READ response or a WRITE request carries (a frame is at most 64 KiB). */
export const FS_MAX_IO = 60 * 1024;
export const FS_APPEND = -1;
/** Size of the stat block on the wire. */
export const FS_STAT_SIZE = 96;

export interface FsStat {
  dev: number; ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number;
  size: number; blksize: number; blocks: number;
  atimeSec: number; atimeNsec: number; mtimeSec: number; mtimeNsec: number; ctimeSec: number; ctimeNsec: number;
}
export interface FsDirent { ino: number; type: number; name: string }

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
  | { id: number; kind: 'open'; status: number; handle: number; stat: FsStat }
  | { id: number; kind: 'read'; status: number; data: Buffer }
  | { id: number; kind: 'write'; status: number; written: number; offset: number }
  | { id: number; kind: 'stat'; status: number; stat: FsStat }
  | { id: number; kind: 'readlink'; status: number; target: string }
  | { id: number; kind: 'getdents'; status: number; entries: FsDirent[] }
  | { id: number; kind: 'close' | 'access' | 'mkdir' | 'unlink' | 'rename'; status: number };

export const FS_ZERO_STAT: FsStat = {
  dev: 0, ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 0, blocks: 0,
  atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0,
};

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

function putStat(w: Writer, s: FsStat): Writer {
  return w.bytes(u64(s.dev)).bytes(u64(s.ino)).u32(s.mode).u32(s.nlink).u32(s.uid).u32(s.gid).bytes(u64(s.rdev))
    .bytes(i64(s.size)).u32(s.blksize).bytes(i64(s.blocks))
    .bytes(i64(s.atimeSec)).u32(s.atimeNsec).bytes(i64(s.mtimeSec)).u32(s.mtimeNsec).bytes(i64(s.ctimeSec)).u32(s.ctimeNsec);
}
function getStat(r: Reader): FsStat {
  return {
    dev: readU64(r), ino: readU64(r), mode: r.u32(), nlink: r.u32(), uid: r.u32(), gid: r.u32(), rdev: readU64(r),
    size: readI64(r), blksize: r.u32(), blocks: readI64(r),
    atimeSec: readI64(r), atimeNsec: r.u32(), mtimeSec: readI64(r), mtimeNsec: r.u32(), ctimeSec: readI64(r), ctimeNsec: r.u32(),
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
    case 'open': w.str(q.path).u32(q.flags).u32(q.mode); break;
    case 'read': w.u32(q.handle).bytes(u64(q.offset)).u32(q.len); break;
    case 'write': w.u32(q.handle).bytes(u64(q.offset)); putData(w, q.data); break;
    case 'close': case 'getdents': w.u32(q.handle); break;
    case 'stat': w.str(q.path).u32(q.flags).u32(q.handle); break;
    case 'access': case 'mkdir': w.str(q.path).u32(q.mode); break;
    case 'readlink': w.str(q.path); break;
    case 'unlink': w.str(q.path).u32(q.flags); break;
    case 'rename': w.str(q.path).str(q.path2); break;
  }
  return w.frame(q.id, FS_TYPES[q.kind]);
}

export function encodeFsResponse(s: FsResponse): Buffer {
  const w = new Writer().i32(s.status);
  switch (s.kind) {
    case 'open': putStat(w.u32(s.handle), s.stat); break;
    case 'read': putData(w, s.data); break;
    case 'write': w.u32(s.written).bytes(u64(s.offset)); break;
    case 'stat': putStat(w, s.stat); break;
    case 'readlink': w.str(s.target); break;
    case 'getdents':
      w.u16(s.entries.length);
      for (const e of s.entries) w.bytes(u64(e.ino)).u8(e.type).str(e.name);
      break;
    default: break;
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
    case 'open': q = { id, kind, path: r.str(), flags: r.u32(), mode: r.u32() }; break;
    case 'read': q = { id, kind, handle: r.u32(), offset: readU64(r), len: r.u32() }; break;
    case 'write': q = { id, kind, handle: r.u32(), offset: readU64(r), data: getData(r) }; break;
    case 'close': case 'getdents': q = { id, kind, handle: r.u32() }; break;
    case 'stat': q = { id, kind, path: r.str(), flags: r.u32(), handle: r.u32() }; break;
    case 'access': case 'mkdir': q = { id, kind, path: r.str(), mode: r.u32() }; break;
    case 'readlink': q = { id, kind, path: r.str() }; break;
    case 'unlink': q = { id, kind, path: r.str(), flags: r.u32() }; break;
    case 'rename': q = { id, kind, path: r.str(), path2: r.str() }; break;
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
    case 'open': s = { id, kind, status, handle: r.u32(), stat: getStat(r) }; break;
    case 'read': s = { id, kind, status, data: getData(r) }; break;
    case 'write': s = { id, kind, status, written: r.u32(), offset: readU64(r) }; break;
    case 'stat': s = { id, kind, status, stat: getStat(r) }; break;
    case 'readlink': s = { id, kind, status, target: r.str() }; break;
    case 'getdents': {
      const n = r.u16();
      const entries: FsDirent[] = [];
      for (let i = 0; i < n; i++) entries.push({ ino: readU64(r), type: r.u8(), name: r.str() });
      s = { id, kind, status, entries };
      break;
    }
    default: s = { id, kind, status }; break;
  }
  r.end();
  return s;
}
