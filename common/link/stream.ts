/**
 * One AP stream as a Node Duplex, used on both ends of the link: the intproxy hands it to its local
 * socket, the agent pipes it to and from the remote socket.
 *
 * Flow control (docs/protocol.md, "Streams"): we never have more than the peer's credit in flight,
 * and we grant credit back only for bytes our reader has taken, so a slow reader on either side
 * stops the sender instead of making anyone buffer the whole transfer.
 */
import { Duplex } from 'node:stream';
import {
  AP_HEADER_SIZE,
  AP_INITIAL_WINDOW,
  AP_MAX_DATA_CHUNK,
  ApKind,
  encodeClose,
  encodeEof,
  encodeHeader,
  type ApErrorBody,
} from '../protocol/agent/index.js';
import { AgentLinkError } from './errors.js';

/**
 * Where a stream's outgoing frames go: the link (returns false once the link is gone). DATA comes
 * as its header plus the payload, so the sink can write both without joining them.
 */
export type FrameSink = (frame: Buffer, payload?: Buffer) => boolean;

/** A CREDIT frame in one allocation: one is sent for nearly every DATA frame received. */
function creditFrame(stream: number, bytes: number): Buffer {
  const f = Buffer.allocUnsafe(AP_HEADER_SIZE + 4);
  f.writeUInt32LE(9, 0);
  f[4] = ApKind.CREDIT;
  f.writeUInt32LE(stream >>> 0, 5);
  f.writeUInt32LE(bytes >>> 0, 9);
  return f;
}

export class ApStream extends Duplex {
  /** Bytes the peer still lets us send. */
  private sendCredit = AP_INITIAL_WINDOW;
  /** Bytes we received and our reader took, not yet reported to the peer with CREDIT. */
  private owedCredit = 0;
  private pendingWrite: { buf: Buffer; cb: (err?: Error | null) => void } | undefined;
  private eofReceived = false;
  /** The peer sent CLOSE (or the link is gone): send nothing more for this id. */
  private remoteGone = false;
  /**
   * Datagram streams (UDP): every write is one DATA frame, never split; one that does not fit the
   * peer's credit is dropped, as a congested network would.
   */
  datagram = false;
  /** For outgoing connections: the agent side's socket address, from the outgoing.connect result. */
  agentSocket: { localAddress: string; localPort: number } | undefined;

  constructor(
    readonly id: number,
    private readonly sink: FrameSink,
    private readonly onGone: (s: ApStream) => void,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
  }

  // ---- frames from the peer ----

  /**
   * One DATA frame's payload, whole or as the pieces the link read it in (kept, not copied; a
   * datagram is joined, since it must stay one message).
   */
  onData(payload: Buffer | Buffer[], length?: number): void {
    if (this.destroyed || this.eofReceived) return;
    let n: number;
    let keepingUp = true;
    if (Buffer.isBuffer(payload)) {
      n = payload.length;
      if (n > 0) keepingUp = this.push(payload);
    } else {
      n = length ?? payload.reduce((sum, p) => sum + p.length, 0);
      if (this.datagram) {
        if (n > 0) keepingUp = this.push(payload.length === 1 ? payload[0]! : Buffer.concat(payload, n));
      } else {
        for (const piece of payload) keepingUp = this.push(piece) && keepingUp;
      }
    }
    if (n === 0) return;
    // push() returning true means our reader is keeping up: the bytes count as handed on.
    if (keepingUp) this.sink(creditFrame(this.id, n));
    else this.owedCredit += n;
  }

  onEof(): void {
    if (this.eofReceived || this.destroyed) return;
    this.eofReceived = true;
    this.push(null);
  }

  onCredit(n: number): void {
    this.sendCredit += n;
    this.flushPending();
  }

  onClose(error?: ApErrorBody): void {
    if (this.destroyed) return;
    this.remoteGone = true;
    if (error) {
      this.destroy(new AgentLinkError(error.code, error.message));
    } else if (!this.eofReceived) {
      // CLOSE without a prior EOF is an abort: treat it as a reset, not as a clean end.
      this.destroy(new AgentLinkError('ECONNRESET', 'stream closed by peer'));
    } else if (this.writableFinished) {
      this.destroy();
    } else {
      // The peer is gone both ways but our reader may still have its last bytes to read: keep the
      // readable side, fail any further writes.
      this.failPendingWrite();
    }
  }

  /** The link is gone: nothing can be sent any more. */
  linkLost(err: AgentLinkError): void {
    this.remoteGone = true;
    this.destroy(err);
  }

  // ---- Duplex implementation ----

  override _read(): void {
    if (this.owedCredit > 0 && !this.remoteGone) {
      const n = this.owedCredit;
      this.owedCredit = 0;
      this.sink(creditFrame(this.id, n));
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.remoteGone) {
      cb(new AgentLinkError('EPIPE', 'stream closed by peer'));
      return;
    }
    this.pendingWrite = { buf: chunk, cb };
    this.flushPending();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.remoteGone) this.sink(encodeEof(this.id));
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.remoteGone) {
      this.remoteGone = true;
      const body = err ? { code: codeOf(err), message: err.message } : undefined;
      this.sink(encodeClose(this.id, body));
    }
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    pending?.cb(err ?? new AgentLinkError('EPIPE', 'stream destroyed'));
    this.onGone(this);
    cb(err);
  }

  private flushPending(): void {
    const p = this.pendingWrite;
    if (!p) return;
    if (this.remoteGone) return this.failPendingWrite();
    if (this.datagram && p.buf.length > this.sendCredit) {
      this.pendingWrite = undefined;
      p.cb();
      return;
    }
    while (p.buf.length > 0 && this.sendCredit > 0) {
      const n = Math.min(p.buf.length, this.sendCredit, AP_MAX_DATA_CHUNK);
      if (!this.sink(encodeHeader(ApKind.DATA, this.id, n), p.buf.subarray(0, n))) {
        // The link is gone; the link owner will destroy us with the reason.
        return;
      }
      this.sendCredit -= n;
      p.buf = p.buf.subarray(n);
    }
    if (p.buf.length === 0) {
      this.pendingWrite = undefined;
      p.cb();
    }
  }

  private failPendingWrite(): void {
    const p = this.pendingWrite;
    this.pendingWrite = undefined;
    p?.cb(new AgentLinkError('EPIPE', 'stream closed by peer'));
  }
}

function codeOf(err: Error): string {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' ? c : 'EIO';
}
