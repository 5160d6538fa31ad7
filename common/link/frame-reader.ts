/**
 * The link's frame reader: the same frames and the same errors as ApFrameReader (the protocol's
 * reference reader, which the fuzzer holds this one to), without copying DATA payloads. A DATA
 * payload is handed on as the subarrays of the reads it arrived in, however many reads it spans;
 * bytes are copied only to assemble a header split across reads (9 bytes) and the payload of a
 * non-DATA frame that spans reads (small: JSON, credit, ping).
 */
import { AP_HEADER_SIZE, AP_MAX_PAYLOAD, ApKind, ApProtocolError, type ApFrame, type ApKindValue } from '../protocol/agent/index.js';

export interface FrameHandler {
  /** Every frame but DATA, payload in one piece. */
  frame(f: ApFrame): void;
  /** A whole DATA frame: `pieces` (possibly none) hold its `length` bytes in order. */
  data(channel: number, pieces: Buffer[], length: number): void;
}

const KNOWN_KINDS = new Set<number>(Object.values(ApKind));

export class LinkFrameReader {
  /** Header bytes of a frame whose header is split across reads. */
  private readonly head = Buffer.allocUnsafe(AP_HEADER_SIZE);
  private headHave = 0;
  /** Inside a payload: its frame's kind and channel, and the bytes still to come. */
  private inPayload = false;
  private kind: ApKindValue = ApKind.DATA;
  private channel = 0;
  private need = 0;
  private length = 0;
  private pieces: Buffer[] = [];
  private halted = false;

  constructor(
    private readonly handler: FrameHandler,
    private readonly maxPayload = AP_MAX_PAYLOAD,
  ) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.inPayload ? AP_HEADER_SIZE + this.length - this.need : this.headHave;
  }

  /** Stop delivering: the handler closed the link and the rest of this read means nothing. */
  halt(): void {
    this.halted = true;
    this.pieces = [];
  }

  /** Delivers every frame the chunk completes; throws ApProtocolError on a malformed one. */
  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end && !this.halted) {
      if (!this.inPayload) {
        if (this.headHave === 0 && end - off >= AP_HEADER_SIZE) {
          this.startFrame(chunk.readUInt32LE(off), chunk[off + 4]!, chunk.readUInt32LE(off + 5));
          off += AP_HEADER_SIZE;
        } else {
          const k = Math.min(AP_HEADER_SIZE - this.headHave, end - off);
          chunk.copy(this.head, this.headHave, off, off + k);
          this.headHave += k;
          off += k;
          // The length alone can already be wrong; say so without waiting for the rest.
          if (this.headHave >= 4) this.checkLength(this.head.readUInt32LE(0));
          if (this.headHave < AP_HEADER_SIZE) return;
          this.headHave = 0;
          this.startFrame(this.head.readUInt32LE(0), this.head[4]!, this.head.readUInt32LE(5));
        }
        if (this.need === 0) {
          this.finishFrame();
          continue;
        }
      }
      const k = Math.min(this.need, end - off);
      this.pieces.push(k === end && off === 0 ? chunk : chunk.subarray(off, off + k));
      this.need -= k;
      off += k;
      if (this.need === 0) this.finishFrame();
    }
  }

  private checkLength(len: number): void {
    if (len < 5) throw new ApProtocolError(`frame length ${len} is shorter than its header`);
    if (len - 5 > this.maxPayload) throw new ApProtocolError(`frame payload of ${len - 5} bytes exceeds the maximum`);
  }

  private startFrame(len: number, kind: number, channel: number): void {
    this.checkLength(len);
    if (!KNOWN_KINDS.has(kind)) throw new ApProtocolError(`unknown frame kind ${kind}`);
    this.kind = kind as ApKindValue;
    this.channel = channel;
    this.length = len - 5;
    this.need = this.length;
    this.inPayload = true;
  }

  private finishFrame(): void {
    this.inPayload = false;
    const pieces = this.pieces;
    this.pieces = [];
    if (this.kind === ApKind.DATA) {
      this.handler.data(this.channel, pieces, this.length);
      return;
    }
    const payload = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, this.length);
    this.handler.frame({ kind: this.kind, channel: this.channel, payload });
  }
}

/** The payload of a DATA frame in one Buffer (a copy only when it arrived in several reads). */
export function joinPieces(pieces: Buffer[], length: number): Buffer {
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, length);
}
