/**
 * intproxy <-> agent ("AP") wire format: see docs/protocol.md section 2, which this file follows.
 * No imports beyond Node's Buffer: both the CLI and the agent bundle depend on it.
 */

/**
 * Kubernetes only: the agent's listener writes this line on every connection it accepts, before
 * any AP frame, so the CLI can tell a live listener from a port-forward that has not reached one yet.
 */
export const AP_LISTENER_BANNER = 'MIRRORD-AGENT 1\n';

/** 2: RESPONSE may carry a binary tail (fs.read's bytes, no longer base64 in JSON). */
export const AP_VERSION = 2;
/** Largest payload a frame may carry; larger frames are a protocol error (the link is closed). */
export const AP_MAX_PAYLOAD = 1024 * 1024;
/** Each direction of a stream starts with this much credit. */
export const AP_INITIAL_WINDOW = 1024 * 1024;
/** len (u32) + kind (u8) + channel (u32). */
export const AP_HEADER_SIZE = 9;
/** DATA frames are cut to this size so one stream cannot hold the link for long. */
export const AP_MAX_DATA_CHUNK = 256 * 1024;

export const ApKind = {
  HELLO: 1,
  HELLO_OK: 2,
  HELLO_ERR: 3,
  PING: 4,
  PONG: 5,
  REQUEST: 6,
  RESPONSE: 7,
  DATA: 8,
  EOF: 9,
  CLOSE: 10,
  CREDIT: 11,
  /** Agent -> client: a new agent-initiated stream (even id) carrying one incoming connection. */
  OPEN: 12,
} as const;
export type ApKindValue = (typeof ApKind)[keyof typeof ApKind];
const KIND_NAMES = new Map<number, string>(Object.entries(ApKind).map(([k, v]) => [v, k]));

export function apKindName(kind: number): string {
  return KIND_NAMES.get(kind) ?? `kind(${kind})`;
}

export interface ApFrame {
  kind: ApKindValue;
  channel: number;
  payload: Buffer;
}

export class ApProtocolError extends Error {
  override readonly name = 'ApProtocolError';
  readonly code = 'EPROTO';
}

// ---- payload types ------------------------------------------------------------------------------

export interface ApHello {
  version: number;
  token: string;
  client: string;
}
export interface ApHelloOk {
  version: number;
  agent: string;
  targetPid: number;
  /** The agent's own pid in the target's PID namespace (its guard watches it). */
  agentPid?: number;
}

// ---- incoming traffic ---------------------------------------------------------------------------

export type ApIncomingMode = 'mirror' | 'steal';
/** Regexes (case-insensitive); a request is stolen when every one that is set matches. */
export interface ApHttpFilter {
  header?: string;
  path?: string;
  method?: string;
}
/** What an OPEN frame says about the incoming connection it carries. */
export interface ApOpen {
  port: number;
  mode: ApIncomingMode;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}
export interface ApErrorBody {
  code: string;
  message: string;
}
export type ApResponse = { ok: true; result: unknown } | { ok: false; error: ApErrorBody };

export interface ApDnsAddress {
  address: string;
  family: 4 | 6;
}

// ---- remote files (fs.*) ------------------------------------------------------------------------
// Paths are absolute paths inside the target; the agent resolves them itself under the target's
// root (never following a symlink out of it). `fd` is the agent's handle for an open file or
// directory, valid on this link only. File bytes travel base64-encoded (at most AP_FS_MAX_READ).

export const AP_FS_MAX_READ = 512 * 1024;
export interface ApFileStat {
  dev: number; ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number;
  size: number; blksize: number; blocks: number;
  atimeSec: number; atimeNsec: number; mtimeSec: number; mtimeNsec: number; ctimeSec: number; ctimeNsec: number;
}
export interface ApDirent { name: string; type: number; ino: number }

export interface ApFileMethods {
  /** flags/mode: Linux open(2) values; O_NOFOLLOW is honoured on the last component. */
  'fs.open': { params: { path: string; flags: number; mode: number }; result: { fd: number; stat: ApFileStat } };
  'fs.read': { params: { fd: number; offset: number; len: number }; result: { data: Buffer } };
  /** offset -1: append at the end. */
  'fs.write': { params: { fd: number; offset: number; data: string }; result: { written: number; offset: number } };
  'fs.close': { params: { fd: number }; result: Record<string, never> };
  'fs.stat': { params: { path: string; follow: boolean }; result: { stat: ApFileStat } };
  'fs.fstat': { params: { fd: number }; result: { stat: ApFileStat } };
  'fs.access': { params: { path: string; mode: number }; result: Record<string, never> };
  'fs.readlink': { params: { path: string }; result: { target: string } };
  /** The next entries of a directory opened with fs.open; none left: an empty list. */
  'fs.readdir': { params: { fd: number; max: number }; result: { entries: ApDirent[] } };
  'fs.mkdir': { params: { path: string; mode: number }; result: Record<string, never> };
  'fs.unlink': { params: { path: string; dir: boolean }; result: Record<string, never> };
  'fs.rename': { params: { from: string; to: string }; result: Record<string, never> };
  /** Mount points of the target (from its mountinfo), for the default rules. */
  'fs.mounts': { params: Record<string, never>; result: { mounts: string[] } };
}

const fsPath = (v: unknown) => typeof v === 'string' && v.startsWith('/') && v.length <= 4096 && !v.includes('\0');
const fsInt = (v: unknown, min: number, max: number) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const fsCheck = (p: unknown, checks: Record<string, (v: unknown) => boolean>): string | undefined => {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) return 'params must be an object';
  for (const [k, ok] of Object.entries(checks)) if (!ok((p as Record<string, unknown>)[k])) return `bad ${k}`;
  return undefined;
};
const FD = (v: unknown) => fsInt(v, 1, 0xffffffff);
const U32 = (v: unknown) => fsInt(v, 0, 0xffffffff);
export const AP_FILE_PARAM_CHECKS: { [M in keyof ApFileMethods]: (p: unknown) => string | undefined } = {
  'fs.open': (p) => fsCheck(p, { path: fsPath, flags: U32, mode: U32 }),
  'fs.read': (p) => fsCheck(p, { fd: FD, offset: (v) => fsInt(v, 0, Number.MAX_SAFE_INTEGER), len: (v) => fsInt(v, 0, AP_FS_MAX_READ) }),
  'fs.write': (p) => fsCheck(p, { fd: FD, offset: (v) => fsInt(v, -1, Number.MAX_SAFE_INTEGER), data: (v) => typeof v === 'string' && v.length <= AP_FS_MAX_READ * 2 }),
  'fs.close': (p) => fsCheck(p, { fd: FD }),
  'fs.stat': (p) => fsCheck(p, { path: fsPath, follow: (v) => typeof v === 'boolean' }),
  'fs.fstat': (p) => fsCheck(p, { fd: FD }),
  'fs.access': (p) => fsCheck(p, { path: fsPath, mode: (v) => fsInt(v, 0, 7) }),
  'fs.readlink': (p) => fsCheck(p, { path: fsPath }),
  'fs.readdir': (p) => fsCheck(p, { fd: FD, max: (v) => fsInt(v, 1, 4096) }),
  'fs.mkdir': (p) => fsCheck(p, { path: fsPath, mode: U32 }),
  'fs.unlink': (p) => fsCheck(p, { path: fsPath, dir: (v) => typeof v === 'boolean' }),
  'fs.rename': (p) => fsCheck(p, { from: fsPath, to: fsPath }),
  'fs.mounts': (p) => fsCheck(p, {}),
};

/** The method table: what each request carries and what a successful response holds. */
export interface ApMethods extends ApFileMethods {
  'outgoing.connect': {
    /** `udp`: each DATA frame is one datagram, both ways. */
    params: { stream: number; host: string; port: number; protocol?: 'tcp' | 'udp' };
    result: { localAddress: string; localPort: number };
  };
  'dns.lookup': {
    params: { name: string; family: 0 | 4 | 6 };
    result: { addresses: ApDnsAddress[]; canonname: string };
  };
  'env.get': { params: Record<string, never>; result: { env: Record<string, string> } };
  'agent.info': { params: Record<string, never>; result: { version: number; targetPid: number; hostname: string } };
  'incoming.subscribe': {
    params: { port: number; mode: ApIncomingMode; httpFilter?: ApHttpFilter };
    result: { port: number; backend: string };
  };
  'incoming.unsubscribe': { params: { port: number }; result: Record<string, never> };
}
export type ApMethod = keyof ApMethods;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isU32 = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

/**
 * Shape checks for params arriving from the wire (the agent must not trust them). Each returns an
 * error message, or undefined when the params are well formed.
 */
export const AP_PARAM_CHECKS: { [M in ApMethod]: (p: unknown) => string | undefined } = {
  ...AP_FILE_PARAM_CHECKS,
  'outgoing.connect': (p) =>
    !isObj(p)
      ? 'params must be an object'
      : !isU32(p.stream) || p.stream === 0
        ? 'stream must be a non-zero u32'
        : typeof p.host !== 'string'
          ? 'host must be a string'
          : !Number.isInteger(p.port) || (p.port as number) < 1 || (p.port as number) > 65535
            ? 'port must be 1..65535'
            : p.protocol !== undefined && p.protocol !== 'tcp' && p.protocol !== 'udp'
              ? 'protocol must be tcp or udp'
              : undefined,
  'dns.lookup': (p) =>
    !isObj(p)
      ? 'params must be an object'
      : typeof p.name !== 'string' || p.name.length === 0 || p.name.length > 1024
        ? 'name must be a non-empty string'
        : p.family !== 0 && p.family !== 4 && p.family !== 6
          ? 'family must be 0, 4 or 6'
          : undefined,
  'env.get': (p) => (isObj(p) ? undefined : 'params must be an object'),
  'agent.info': (p) => (isObj(p) ? undefined : 'params must be an object'),
  'incoming.subscribe': (p) =>
    !isObj(p)
      ? 'params must be an object'
      : !isPort(p.port)
        ? 'port must be 1..65535'
        : p.mode !== 'mirror' && p.mode !== 'steal'
          ? 'mode must be mirror or steal'
          : p.httpFilter !== undefined && !isHttpFilter(p.httpFilter)
            ? 'httpFilter must hold header, path and method regex strings'
            : undefined,
  'incoming.unsubscribe': (p) => (!isObj(p) ? 'params must be an object' : !isPort(p.port) ? 'port must be 1..65535' : undefined),
};

function isPort(v: unknown): boolean {
  return Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;
}

function isHttpFilter(v: unknown): boolean {
  return isObj(v) && ['header', 'path', 'method'].every((k) => v[k] === undefined || (typeof v[k] === 'string' && (v[k] as string).length < 4096));
}

export function isApMethod(m: unknown): m is ApMethod {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(AP_PARAM_CHECKS, m);
}

// ---- encoding -----------------------------------------------------------------------------------

export function encodeHeader(kind: ApKindValue, channel: number, payloadLength: number): Buffer {
  if (payloadLength > AP_MAX_PAYLOAD) throw new ApProtocolError(`payload of ${payloadLength} bytes exceeds the maximum`);
  const h = Buffer.allocUnsafe(AP_HEADER_SIZE);
  h.writeUInt32LE(5 + payloadLength, 0);
  h.writeUInt8(kind, 4);
  h.writeUInt32LE(channel >>> 0, 5);
  return h;
}

export function encodeFrame(kind: ApKindValue, channel: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader(kind, channel, payload.length), payload]);
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

export const encodeHello = (h: ApHello) => encodeFrame(ApKind.HELLO, 0, json(h));
export const encodeHelloOk = (h: ApHelloOk) => encodeFrame(ApKind.HELLO_OK, 0, json(h));
export const encodeHelloErr = (message: string) => encodeFrame(ApKind.HELLO_ERR, 0, json({ message }));
export function encodePing(data: Buffer): Buffer {
  if (data.length !== 8) throw new ApProtocolError('PING carries exactly 8 bytes');
  return encodeFrame(ApKind.PING, 0, data);
}
export const encodePong = (data: Buffer) => encodeFrame(ApKind.PONG, 0, data);
export const encodeRequest = (id: number, method: string, params: unknown) =>
  encodeFrame(ApKind.REQUEST, id, json({ method, params }));
/**
 * A RESPONSE whose result has a Buffer `data` sends those bytes raw after the JSON (no base64):
 * payload = 0x00, u32 JSON length, JSON (with `"data"` left out and `"$bin": "data"`), the bytes.
 * JSON never starts with 0x00, so the two forms cannot be confused.
 */
export function encodeResponse(id: number, r: ApResponse): Buffer {
  const data = r.ok && isObj(r.result) ? r.result.data : undefined;
  if (!Buffer.isBuffer(data)) return encodeFrame(ApKind.RESPONSE, id, json(r));
  const head = json({ ok: true, result: { ...(r as { result: object }).result, data: undefined, $bin: 'data' } });
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32LE(head.length, 1);
  return encodeFrame(ApKind.RESPONSE, id, Buffer.concat([prefix, head, data]));
}
export const encodeData = (stream: number, bytes: Buffer) => encodeFrame(ApKind.DATA, stream, bytes);
export const encodeEof = (stream: number) => encodeFrame(ApKind.EOF, stream);
export const encodeClose = (stream: number, error?: ApErrorBody) =>
  encodeFrame(ApKind.CLOSE, stream, json(error ? { error } : {}));
export const encodeOpen = (stream: number, o: ApOpen) => encodeFrame(ApKind.OPEN, stream, json(o));
export function encodeCredit(stream: number, bytes: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32LE(bytes >>> 0, 0);
  return encodeFrame(ApKind.CREDIT, stream, p);
}

// ---- payload decoding (each throws ApProtocolError when the payload is malformed) --------------

function parseJson(frame: ApFrame): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(frame.payload.toString('utf8'));
  } catch {
    throw new ApProtocolError(`${apKindName(frame.kind)} payload is not JSON`);
  }
  if (!isObj(v)) throw new ApProtocolError(`${apKindName(frame.kind)} payload is not a JSON object`);
  return v;
}

function bad(frame: ApFrame, what: string): never {
  throw new ApProtocolError(`${apKindName(frame.kind)}: ${what}`);
}

export function decodeHello(f: ApFrame): ApHello {
  const v = parseJson(f);
  if (typeof v.version !== 'number' || typeof v.token !== 'string') bad(f, 'needs version and token');
  return { version: v.version, token: v.token, client: typeof v.client === 'string' ? v.client : '' };
}

export function decodeHelloOk(f: ApFrame): ApHelloOk {
  const v = parseJson(f);
  if (typeof v.version !== 'number' || typeof v.targetPid !== 'number') bad(f, 'needs version and targetPid');
  const ok: ApHelloOk = { version: v.version, agent: typeof v.agent === 'string' ? v.agent : '', targetPid: v.targetPid };
  if (typeof v.agentPid === 'number') ok.agentPid = v.agentPid;
  return ok;
}

export function decodeOpen(f: ApFrame): ApOpen {
  const v = parseJson(f);
  if (!isPort(v.port) || (v.mode !== 'mirror' && v.mode !== 'steal')) bad(f, 'needs port and mode');
  const str = (x: unknown) => (typeof x === 'string' ? x : '');
  const num = (x: unknown) => (Number.isInteger(x) ? (x as number) : 0);
  return {
    port: v.port as number,
    mode: v.mode,
    remoteAddress: str(v.remoteAddress),
    remotePort: num(v.remotePort),
    localAddress: str(v.localAddress),
    localPort: num(v.localPort),
  };
}

export function decodeHelloErr(f: ApFrame): { message: string } {
  const v = parseJson(f);
  return { message: typeof v.message === 'string' ? v.message : 'handshake refused' };
}

export function decodeRequest(f: ApFrame): { method: string; params: unknown } {
  const v = parseJson(f);
  if (typeof v.method !== 'string') bad(f, 'needs a method');
  return { method: v.method, params: v.params ?? {} };
}

function decodeErrorBody(f: ApFrame, e: unknown): ApErrorBody {
  if (!isObj(e) || typeof e.code !== 'string') bad(f, 'error needs a code');
  return { code: e.code, message: typeof e.message === 'string' ? e.message : e.code };
}

export function decodeResponse(f: ApFrame): ApResponse {
  if (f.payload.length > 0 && f.payload[0] === 0) {
    if (f.payload.length < 5) bad(f, 'binary form needs a JSON length');
    const headLen = f.payload.readUInt32LE(1);
    if (headLen > f.payload.length - 5) bad(f, 'JSON length past the end');
    const v = parseJson({ ...f, payload: f.payload.subarray(5, 5 + headLen) });
    if (v.ok !== true || !isObj(v.result) || v.result.$bin !== 'data') bad(f, 'binary form needs ok and $bin');
    const { $bin: _bin, ...result } = v.result;
    return { ok: true, result: { ...result, data: f.payload.subarray(5 + headLen) } };
  }
  const v = parseJson(f);
  if (v.ok === true) return { ok: true, result: v.result };
  if (v.ok === false) return { ok: false, error: decodeErrorBody(f, v.error) };
  bad(f, 'ok must be a boolean');
}

export function decodeClose(f: ApFrame): { error?: ApErrorBody } {
  // An empty payload is accepted as "no error": the doc's `{}` costs nothing to be lenient about.
  if (f.payload.length === 0) return {};
  const v = parseJson(f);
  return v.error === undefined ? {} : { error: decodeErrorBody(f, v.error) };
}

export function decodeCredit(f: ApFrame): number {
  if (f.payload.length !== 4) bad(f, 'payload must be 4 bytes');
  return f.payload.readUInt32LE(0);
}

export function decodePing(f: ApFrame): Buffer {
  if (f.payload.length !== 8) bad(f, 'payload must be 8 bytes');
  return f.payload;
}

// ---- incremental reader -------------------------------------------------------------------------

/**
 * Turns a byte stream into frames. Keeps received chunks in a list and copies only when a frame
 * spans chunks, so a large DATA frame delivered in one chunk costs no copy.
 */
export class ApFrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxPayload = AP_MAX_PAYLOAD) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): ApFrame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: ApFrame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const len = this.peekU32();
      if (len < 5) throw new ApProtocolError(`frame length ${len} is shorter than its header`);
      if (len - 5 > this.maxPayload) throw new ApProtocolError(`frame payload of ${len - 5} bytes exceeds the maximum`);
      if (this.buffered < 4 + len) break;
      const frame = this.take(4 + len);
      const kind = frame.readUInt8(4);
      if (!KIND_NAMES.has(kind)) throw new ApProtocolError(`unknown frame kind ${kind}`);
      frames.push({ kind: kind as ApKindValue, channel: frame.readUInt32LE(5), payload: frame.subarray(AP_HEADER_SIZE) });
    }
    return frames;
  }

  private peekU32(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    return this.copyOut(4).readUInt32LE(0);
  }

  private copyOut(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
    } else {
      out = this.copyOut(n);
    }
    // One splice for all the chunks the frame used up: a frame that arrived in many small chunks
    // must not cost one array shift per chunk (quadratic; found by the fuzzer).
    let left = n;
    let whole = 0;
    while (whole < this.chunks.length && this.chunks[whole]!.length <= left) left -= this.chunks[whole++]!.length;
    if (whole > 0) this.chunks.splice(0, whole);
    if (left > 0) this.chunks[0] = this.chunks[0]!.subarray(left);
    this.buffered -= n;
    return out;
  }
}
