/**
 * Incoming on the fast path (docs/fast-path.md, "Incoming"): a connection an unfiltered steal
 * accepted is handed to the session's program itself instead of being streamed to it.
 *
 * 1. The connection (still paused: the agent has read nothing of it) goes to the socket helper over
 *    Node's child_process channel, under a one-time id; the agent keeps its own descriptor.
 * 2. Once the helper has it, the session gets an OPEN carrying the id (`handover`). Its intproxy
 *    makes a placeholder connection to the program's listener; the layer's accept() takes the
 *    connection from the helper with the id and swaps it onto the accepted descriptor.
 * 3. Then one of:
 *    - the helper says "taken": the agent closes its descriptor (close, never shutdown: the
 *      connection is the program's now) and the stream;
 *    - the intproxy asks `incoming.stream` (the layer could not take it, or no layer asked): the
 *      helper drops its copy and the agent streams the connection as it does without the fast path;
 *    - the helper says "expired" (nobody took it in its 10 s), or nothing happened for longer: the
 *      connection is closed.
 * Anything that fails before the OPEN costs only the fast path: the caller streams the connection.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type { ApOpen } from '../../../common/protocol/agent/index.js';
import type { ApStream } from '../../../common/link/stream.js';
import type { Logger } from '../../../common/log.js';

/** Longer than the helper keeps an untaken connection (KEEP_MS in sockhelper.c). */
const PENDING_MS = 15_000;
/**
 * Node passes one descriptor at a time and waits for the helper's acknowledgement before the next:
 * a connection not written to the helper by then is streamed, and the helper no longer used.
 */
const SEND_MS = 2_000;

interface Pending {
  id: string;
  socket: net.Socket;
  stream: ApStream;
  sessions: SessionHandovers;
  timer: NodeJS.Timeout;
}

class HandoverHelper {
  readonly pending = new Map<string, Pending>();
  alive = true;
  /** A pass did not complete in SEND_MS: the channel is stuck, connections take the stream. */
  stuck = false;

  constructor(
    private readonly child: ChildProcess,
    readonly log: Logger,
  ) {
    child.on('message', (m: unknown) => this.onMessage(m));
    child.once('exit', () => {
      this.alive = false;
    });
    child.on('error', (err) => log.debug(`helper channel: ${err.message}`));
  }

  get usable(): boolean {
    return this.alive && !this.stuck && this.child.connected;
  }

  /** Passes the socket's descriptor; resolves once it is written to the helper's channel. */
  send(id: string, socket: net.Socket): Promise<void> {
    // The libuv handle, sent as a "net.Native": Node then leaves the agent's socket open (and its
    // net.Server none the wiser), which the stream fallback needs.
    const handle = (socket as unknown as { _handle?: object })._handle;
    if (!handle) return Promise.reject(new Error('the socket has no handle'));
    return new Promise((resolve, reject) => {
      try {
        this.child.send({ mirrordId: id }, handle as net.Socket, (err) => (err ? reject(err) : resolve()));
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  drop(id: string): void {
    if (!this.alive || !this.child.connected) return;
    try {
      this.child.send({ mirrord: 'drop', id });
    } catch {
      // The helper is gone, and its copy with it.
    }
  }

  private onMessage(m: unknown): void {
    const msg = m as { mirrord?: unknown; id?: unknown };
    if (typeof msg?.id !== 'string') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.mirrord === 'taken') {
      this.log.debug(`connection ${msg.id}: taken by the program`);
      finish(p, 'taken');
    } else if (msg.mirrord === 'expired') {
      this.log.info(`connection ${msg.id}: nobody took it in time; closed`);
      finish(p, 'expired');
    }
  }
}

let helper: HandoverHelper | undefined;

/** fdpass/helper.ts registers the running socket helper (undefined: it stopped). */
export function setHandoverHelper(child: ChildProcess | undefined, log: Logger): void {
  helper = child ? new HandoverHelper(child, log) : undefined;
}

/** The agent can hand connections over (a socket helper with a channel runs). */
export function canHandOver(): boolean {
  return !!helper?.usable;
}

function finish(p: Pending, how: 'taken' | 'expired' | 'stream'): void {
  clearTimeout(p.timer);
  helper?.pending.delete(p.id);
  p.sessions.byStream.delete(p.stream.id);
  if (how === 'stream') {
    helper?.drop(p.id);
    p.socket.pipe(p.stream).pipe(p.socket);
    p.socket.once('error', () => p.stream.destroy());
    p.stream.once('error', () => p.socket.destroy());
    p.socket.resume();
    return;
  }
  // destroy() closes the agent's descriptor without a shutdown(): a taken connection lives on in
  // the program's descriptor.
  p.socket.destroy();
  p.stream.destroy();
}

/** One session's connections handed over and not settled yet, by the OPEN's stream id. */
export class SessionHandovers {
  readonly byStream = new Map<number, Pending>();

  /**
   * Hands `socket` over to the session; false when it cannot even try (the caller streams it).
   * `fallback` streams it when the helper could not be given the socket.
   */
  offer(socket: net.Socket, info: ApOpen, open: (info: ApOpen) => ApStream, fallback: () => void): boolean {
    const h = helper;
    if (!h?.usable) return false;
    const id = randomBytes(16).toString('hex');
    let settled = false;
    const late = setTimeout(() => {
      settled = true;
      h.stuck = true;
      h.log.warn(`the socket helper did not take a connection within ${SEND_MS / 1000} s: incoming connections take the stream from now on`);
      fallback();
    }, SEND_MS);
    late.unref();
    h.send(id, socket).then(
      () => {
        clearTimeout(late);
        if (settled || socket.destroyed) {
          h.drop(id);
          return;
        }
        const stream = open({ ...info, handover: id });
        const p: Pending = {
          id,
          socket,
          stream,
          sessions: this,
          timer: setTimeout(() => finish(p, 'expired'), PENDING_MS),
        };
        p.timer.unref();
        h.pending.set(id, p);
        this.byStream.set(stream.id, p);
        // The session went (its streams with it) before anything was settled.
        stream.once('close', () => {
          if (h.pending.get(id) === p) {
            clearTimeout(p.timer);
            h.pending.delete(id);
            this.byStream.delete(stream.id);
            h.drop(id);
            socket.destroy();
          }
        });
        h.log.debug(`connection from ${info.remoteAddress}:${info.remotePort} on port ${info.port}: handed over as ${id}`);
      },
      (err: Error) => {
        clearTimeout(late);
        if (settled) return;
        h.log.debug(`connection from ${info.remoteAddress}:${info.remotePort}: cannot pass it to the helper (${err.message}); streaming it`);
        fallback();
      },
    );
    return true;
  }

  /** incoming.stream: the session's program could not take the connection of `stream`. */
  stream(stream: number): boolean {
    const p = this.byStream.get(stream);
    if (!p) return false;
    helper?.log.debug(`connection ${p.id}: the session streams it`);
    finish(p, 'stream');
    return true;
  }
}
