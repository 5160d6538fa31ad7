/**
 * The framing and liveness half of an AP link, shared by the client (AgentConnection) and the agent
 * (serveAgent): frames in and out of one Duplex, PING/PONG, and "dead after N ms of silence".
 * It knows nothing of requests or streams.
 */
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { ApKind, apKindName, decodePing, encodePing, encodePong, type ApFrame } from '../protocol/agent/index.js';
import type { Logger } from '../log.js';
import { AgentLinkError } from './errors.js';
import { LinkFrameReader, joinPieces } from './frame-reader.js';

export const DEFAULT_HEARTBEAT_MS = 5_000;
export const DEFAULT_DEAD_AFTER_MS = 15_000;

export interface FramedLinkOptions {
  heartbeatMs?: number;
  deadAfterMs?: number;
  log?: Logger;
  onFrame: (frame: ApFrame) => void;
  /**
   * DATA frames, their payload in the pieces it arrived in (no copy). Without it DATA goes to
   * onFrame like any other frame, joined into one Buffer.
   */
  onData?: (channel: number, pieces: Buffer[], length: number) => void;
  /**
   * Called once: without an error only when we ended the link ourselves (end()); the peer's EOF is
   * an ELINK error like any other loss, since only the peer knows whether it meant to go.
   */
  onClose: (err?: AgentLinkError) => void;
}

export class FramedLink {
  private readonly reader = new LinkFrameReader({ frame: (f) => this.onOneFrame(f), data: (c, p, n) => this.onDataFrame(c, p, n) });
  private readonly heartbeatMs: number;
  private readonly deadAfterMs: number;
  private lastRx = Date.now();
  private deadTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private heartbeats = false;
  private isClosed = false;

  constructor(
    private readonly stream: Duplex,
    private readonly opts: FramedLinkOptions,
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.deadAfterMs = opts.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
    stream.on('data', this.onChunk);
    stream.on('end', () => this.finish(new AgentLinkError('ELINK', 'the peer ended the link'), true));
    stream.on('error', (err: Error) => this.finish(new AgentLinkError('ELINK', `link error: ${err.message}`, { cause: err })));
    stream.on('close', () => this.finish(new AgentLinkError('ELINK', 'link closed')));
    // The silence clock runs from the start, so a peer that never says HELLO is dropped too.
    this.armDeadTimer(this.deadAfterMs);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Start sending PINGs and answering the peer's PINGs here. Before this (during the handshake)
   * PING/PONG frames are passed to onFrame like any other.
   */
  startHeartbeat(): void {
    if (this.isClosed || this.heartbeats) return;
    this.heartbeats = true;
    this.pingTimer = setInterval(() => this.send(encodePing(randomBytes(8))), this.heartbeatMs);
  }

  /**
   * Returns false only when the link is gone. The link's own write buffer is not a signal here:
   * stream data is bounded by credit, everything else is small.
   *
   * With `payload`, `frame` is only the header: the two go out in one writev (cork) instead of
   * being copied into one Buffer. The payload is referenced, not copied, until the socket has
   * written it, as net.Socket.write does: the caller must not reuse it.
   */
  send(frame: Buffer, payload?: Buffer): boolean {
    const stream = this.stream;
    if (this.isClosed || stream.destroyed || stream.writableEnded) return false;
    this.opts.log?.trace(`-> ${apKindName(frame.readUInt8(4))} ch=${frame.readUInt32LE(5)} ${frame.readUInt32LE(0) - 5}B`);
    if (payload === undefined || payload.length === 0) {
      stream.write(frame);
    } else {
      stream.cork();
      stream.write(frame);
      stream.write(payload);
      stream.uncork();
    }
    return true;
  }

  /** Orderly close: end our side, give the peer a moment to end its own, then let go. */
  end(): void {
    if (this.isClosed) return;
    this.finish(undefined, true);
  }

  destroy(err: AgentLinkError): void {
    this.finish(err);
  }

  private readonly onChunk = (chunk: Buffer): void => {
    if (this.isClosed) return;
    this.lastRx = Date.now();
    try {
      // Frames are handed on from inside push(); their handlers catch their own errors.
      this.reader.push(chunk);
    } catch (err) {
      this.finish(new AgentLinkError('ELINK', `malformed frame from peer: ${(err as Error).message}`, { cause: err }));
    }
  };

  private onOneFrame(f: ApFrame): void {
    if (this.isClosed) return;
    this.opts.log?.trace(`<- ${apKindName(f.kind)} ch=${f.channel} ${f.payload.length}B`);
    if (this.heartbeats && f.kind === ApKind.PING) {
      try {
        this.send(encodePong(decodePing(f)));
      } catch (err) {
        this.finish(new AgentLinkError('ELINK', `malformed frame from peer: ${(err as Error).message}`));
      }
      return;
    }
    if (this.heartbeats && f.kind === ApKind.PONG) return;
    try {
      this.opts.onFrame(f);
    } catch (err) {
      // A handler that throws means the peer sent something we cannot make sense of.
      this.finish(new AgentLinkError('ELINK', `bad ${apKindName(f.kind)} frame: ${(err as Error).message}`, { cause: err }));
    }
  }

  private onDataFrame(channel: number, pieces: Buffer[], length: number): void {
    if (this.isClosed) return;
    const onData = this.opts.onData;
    if (!onData) return this.onOneFrame({ kind: ApKind.DATA, channel, payload: joinPieces(pieces, length) });
    this.opts.log?.trace(`<- DATA ch=${channel} ${length}B`);
    try {
      onData(channel, pieces, length);
    } catch (err) {
      this.finish(new AgentLinkError('ELINK', `bad DATA frame: ${(err as Error).message}`, { cause: err }));
    }
  }

  private armDeadTimer(ms: number): void {
    this.deadTimer = setTimeout(() => {
      const silent = Date.now() - this.lastRx;
      if (silent >= this.deadAfterMs) {
        this.finish(new AgentLinkError('ELINK', `no frame from peer for ${silent} ms: link considered dead`));
      } else {
        this.armDeadTimer(this.deadAfterMs - silent);
      }
    }, ms);
  }

  private finish(err: AgentLinkError | undefined, orderly = false): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reader.halt();
    clearTimeout(this.deadTimer);
    clearInterval(this.pingTimer);
    this.stream.off('data', this.onChunk);
    // Keep an 'error' listener so a late error on a link we gave up on cannot crash the process.
    this.stream.on('error', () => undefined);
    if (!orderly) {
      this.stream.destroy();
    } else {
      this.stream.end();
      // The peer may never end its half; don't let the Duplex linger after we are done with it.
      const t = setTimeout(() => this.stream.destroy(), 1_000);
      t.unref();
      this.stream.once('close', () => clearTimeout(t));
      // Drain whatever the peer still sends so its writes never block on us.
      this.stream.resume();
    }
    this.opts.onClose(err);
  }
}
