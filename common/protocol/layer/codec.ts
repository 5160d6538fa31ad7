/**
 * LP framing and primitives (docs/protocol.md section 1, "Frame"): little-endian frames of u32 len
 * (bytes after it), u32 id, u16 type, u16 reserved, payload; `str`, `addr` and the integer fields.
 * Pure byte work, no I/O, shared by the message families (net.ts, fs.ts, messages.ts).
 */
import { isIPv4, isIPv6 } from 'node:net';

export const LP_MAX_FRAME = 65536;
export const LP_HEADER = 12;
/** A response's type is its request's type | RESPONSE. */
export const RESPONSE = 0x8000;

/**
 * TakeSocket: CONNECT: get a socket from the target's socket helper and connect it to `via`;
 * ACCEPT_TAKE: take the stolen connection `take` from the helper onto the accepted descriptor.
 */
export const LpStatus = { Ok: 0, Bypass: 1, TakeSocket: 2 } as const;

export class LpProtocolError extends Error {
  override readonly name = 'LpProtocolError';
}

export interface LpAddr {
  family: 4 | 6;
  address: string;
  port: number;
}
export interface LpFrame {
  id: number;
  type: number;
  payload: Buffer;
}

/** Splits a byte stream into frames; throws on a length the protocol forbids (caller closes). */
export class LpFrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): LpFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: LpFrame[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32LE(0);
      if (len < LP_HEADER - 4 || len + 4 > LP_MAX_FRAME) {
        throw new LpProtocolError(`frame length ${len} out of bounds`);
      }
      if (this.buf.length < len + 4) break;
      frames.push({
        id: this.buf.readUInt32LE(4),
        type: this.buf.readUInt16LE(8),
        payload: Buffer.from(this.buf.subarray(LP_HEADER, len + 4)),
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

export function addrBytes(family: 4 | 6, address: string): Buffer {
  const out = Buffer.alloc(16);
  if (family === 4) ipv4Bytes(address).copy(out);
  else if (family === 6) ipv6Bytes(address).copy(out);
  else throw new LpProtocolError(`address family must be 4 or 6, got ${String(family)}`);
  return out;
}

export function addrText(family: number, bytes: Buffer): string {
  return family === 4 ? `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}` : ipv6Text(bytes);
}

// ---- writing --------------------------------------------------------------------------------

export class Writer {
  private parts: Buffer[] = [];
  u8(v: number): this {
    return this.int(1, v, 0, 0xff);
  }
  u16(v: number): this {
    return this.int(2, v, 0, 0xffff);
  }
  u32(v: number): this {
    return this.int(4, v, 0, 0xffffffff);
  }
  i32(v: number): this {
    return this.int(4, v, -0x80000000, 0x7fffffff);
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
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
    if (payload.length + LP_HEADER > LP_MAX_FRAME) throw new LpProtocolError('frame too large');
    const head = new Writer()
      .u32(payload.length + LP_HEADER - 4)
      .u32(id)
      .u16(type)
      .u16(0);
    return Buffer.concat([...head.parts, payload]);
  }
}

// ---- reading --------------------------------------------------------------------------------

export class Reader {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): number {
    if (this.pos + n > this.b.length) throw new LpProtocolError('truncated payload');
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number {
    return this.b.readUInt8(this.need(1));
  }
  u16(): number {
    return this.b.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.b.readUInt32LE(this.need(4));
  }
  i32(): number {
    return this.b.readInt32LE(this.need(4));
  }
  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.b.subarray(at, at + n);
  }
  str(): string {
    return this.bytes(this.u16()).toString('utf8');
  }
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
