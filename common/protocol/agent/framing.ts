/**
 * AP framing (docs/protocol.md section 2, "Frame"): kinds, the 9-byte header, the frame reader, the
 * limits, and the frames whose payload is binary (PING/PONG, DATA, EOF, CREDIT). No imports beyond
 * Node's Buffer: both the CLI and the agent bundle depend on it.
 */

/**
 * Kubernetes only: the agent's listener writes this line on every connection it accepts, before
 * any AP frame, so the CLI can tell a live listener from a port-forward that has not reached one yet.
 */
export const AP_LISTENER_BANNER = 'MIRRORD-AGENT 1\n';
/**
 * A shared agent's join relay (Docker, agent.shared) says this on stderr once it reached the agent;
 * it exits with AP_JOIN_LEAVING instead when the agent is leaving, so the CLI starts a new one.
 */
export const AP_JOINED_LINE = 'mirrord-join: connected';
export const AP_JOIN_LEAVING = 3;

/** Largest payload a frame may carry; larger frames are a protocol error (the link is closed). */
export const AP_MAX_PAYLOAD = 1024 * 1024;
/** Each direction of a stream starts with this much credit. */
export const AP_INITIAL_WINDOW = 1024 * 1024;
/**
 * On a Kubernetes link each receiver grants a TCP stream this much in all, the rest as one CREDIT
 * at the stream's start: the port-forward's chain of relays (API server, kubelet, CRI) holds more
 * than AP_INITIAL_WINDOW in flight, so 1 MiB stalled the sender (docs/fast-path.md, Kubernetes).
 */
export const AP_KUBE_STREAM_WINDOW = 8 * 1024 * 1024;
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

export function encodePing(data: Buffer): Buffer {
  if (data.length !== 8) throw new ApProtocolError('PING carries exactly 8 bytes');
  return encodeFrame(ApKind.PING, 0, data);
}
export const encodePong = (data: Buffer) => encodeFrame(ApKind.PONG, 0, data);
export const encodeData = (stream: number, bytes: Buffer) => encodeFrame(ApKind.DATA, stream, bytes);
export const encodeEof = (stream: number) => encodeFrame(ApKind.EOF, stream);
export function encodeCredit(stream: number, bytes: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32LE(bytes >>> 0, 0);
  return encodeFrame(ApKind.CREDIT, stream, p);
}

// ---- decoding (each throws ApProtocolError when the payload is malformed) -----------------------

/** For the payload decoders of every family: the frame's kind names the complaint. */
export function badPayload(frame: ApFrame, what: string): never {
  throw new ApProtocolError(`${apKindName(frame.kind)}: ${what}`);
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON object payload (HELLO, REQUEST, RESPONSE, CLOSE, OPEN, ...). */
export function parseJsonPayload(frame: ApFrame): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(frame.payload.toString('utf8'));
  } catch {
    throw new ApProtocolError(`${apKindName(frame.kind)} payload is not JSON`);
  }
  if (!isObject(v)) throw new ApProtocolError(`${apKindName(frame.kind)} payload is not a JSON object`);
  return v;
}

export const jsonPayload = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

export function decodeCredit(f: ApFrame): number {
  if (f.payload.length !== 4) badPayload(f, 'payload must be 4 bytes');
  return f.payload.readUInt32LE(0);
}

export function decodePing(f: ApFrame): Buffer {
  if (f.payload.length !== 8) badPayload(f, 'payload must be 8 bytes');
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
