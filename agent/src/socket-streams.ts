/**
 * What outgoing TCP/UDP (outgoing.ts) and unix stream connections (unix-stream.ts) share: a table of
 * client streams (odd ids) each bridged to one socket of the target's, the frames that drive them,
 * the splice with half-close both ways, and the shutdown that waits for every socket to close.
 */
import type net from 'node:net';
import { ApKind, decodeClose, decodeCredit, type ApFrame } from '../../common/protocol/agent/index.js';
import type { ApStream } from '../../common/link/stream.js';
import type { AgentLinkError } from '../../common/link/errors.js';
import type { Logger } from '../../common/log.js';

export const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

/** A socket, or the thin face of one (a UDP socket) that closeAll and CLOSE can destroy. */
export interface ClosableSocket {
  readonly closed: boolean;
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
}

export interface StreamEntry {
  /** Absent while a connect that makes the socket later is under way. */
  socket?: ClosableSocket;
  stream?: ApStream;
  /** The client gave up (CLOSE) while we were connecting. */
  cancelled?: boolean;
}

export abstract class SocketStreams {
  protected readonly entries = new Map<number, StreamEntry>();
  protected shutDown = false;

  constructor(protected readonly log?: Logger) {}

  get size(): number {
    return this.entries.size;
  }

  has(channel: number): boolean {
    return this.entries.has(channel);
  }

  /** The checks every connect starts with. */
  protected claim(stream: number, entry: StreamEntry): void {
    if (stream % 2 !== 1) throw codeError('EINVAL', `stream ${stream}: client streams use odd ids`);
    if (this.shutDown) throw codeError('ECONNABORTED', 'the agent is shutting down');
    if (this.entries.has(stream)) throw codeError('EEXIST', `stream ${stream} is already open`);
    this.entries.set(stream, entry);
  }

  /** After an awaited connect: false when the client or closeAll gave the stream up meanwhile. */
  protected stillWanted(stream: number, entry: StreamEntry): boolean {
    return !this.shutDown && !entry.cancelled && this.entries.get(stream) === entry;
  }

  protected release(stream: number, entry: StreamEntry): void {
    if (this.entries.get(stream) === entry) this.entries.delete(stream);
  }

  /** Bytes flow both ways from here on; `what` names the peer in the debug line. */
  protected splice(id: number, entry: StreamEntry, socket: net.Socket, stream: ApStream, what: string): void {
    this.log?.debug(`stream ${id}: connected to ${what}`);
    socket.on('error', (err) => stream.destroy(err));
    stream.on('error', (err) => {
      this.log?.debug(`stream ${id}: ${err.message}`);
      socket.destroy();
    });
    stream.on('close', () => {
      // A clean end leaves the socket to flush what it holds; anything else resets it.
      if (!socket.writableEnded || !socket.readableEnded) socket.destroy();
    });
    socket.on('close', () => {
      this.release(id, entry);
      // A socket closed by the remote before our stream finished (e.g. while waiting for credit)
      // leaves nothing to wait for.
      if (!stream.destroyed && stream.writableFinished && stream.readableEnded) stream.destroy();
    });
    socket.pipe(stream);
    stream.pipe(socket);
  }

  /** A DATA frame's payload, in the pieces the link read it in. Dropped for streams we no longer know. */
  onData(channel: number, pieces: Buffer[], length: number): void {
    this.entries.get(channel)?.stream?.onData(pieces, length);
  }

  /** Stream frames from the client. Frames for streams we no longer know are dropped (they race with CLOSE). */
  onFrame(f: ApFrame): void {
    const entry = this.entries.get(f.channel);
    if (!entry) return;
    switch (f.kind) {
      case ApKind.DATA:
        entry.stream?.onData(f.payload);
        return;
      case ApKind.EOF:
        entry.stream?.onEof();
        return;
      case ApKind.CREDIT:
        entry.stream?.onCredit(decodeCredit(f));
        return;
      case ApKind.CLOSE: {
        const { error } = decodeClose(f);
        if (entry.stream) return entry.stream.onClose(error);
        // Still connecting: the client gave up.
        entry.cancelled = true;
        entry.socket?.destroy();
        return;
      }
    }
  }

  /** Close every socket and stream; resolves once every socket has closed. */
  async closeAll(reason: AgentLinkError): Promise<void> {
    this.shutDown = true;
    const closing = [...this.entries.values()].map(
      ({ socket, stream }) =>
        new Promise<void>((resolve) => {
          if (!socket || socket.closed) return resolve();
          socket.once('close', () => resolve());
          stream?.linkLost(reason);
          socket.destroy();
        }),
    );
    this.entries.clear();
    await Promise.all(closing);
  }
}
