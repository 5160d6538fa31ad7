/**
 * `outgoing.connect`: TCP connections made from the agent's network namespace (the target's), each
 * bridged to one AP stream. Half-close travels both ways (EOF <-> FIN); credit flow control lives in
 * ApStream, and pipe() pauses the socket while the stream has no credit.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { ApKind, decodeClose, decodeCredit, type ApFrame, type ApMethods } from '../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../common/link/stream.js';
import { AgentLinkError } from '../../common/link/errors.js';
import type { Logger } from '../../common/log.js';
import { countConnection } from './metrics.js';

type ConnectParams = ApMethods['outgoing.connect']['params'];
type ConnectResult = ApMethods['outgoing.connect']['result'];

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;

interface Entry {
  socket: net.Socket;
  stream?: ApStream;
}

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

export class OutgoingStreams {
  private readonly entries = new Map<number, Entry>();
  private shutDown = false;

  constructor(
    private readonly send: FrameSink,
    private readonly log?: Logger,
    private readonly connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Connects, and returns the result plus `start`, to be called right after the RESPONSE is sent:
   * no DATA may reach the client before it knows the stream exists.
   */
  async connect(p: ConnectParams): Promise<{ result: ConnectResult; start: () => void }> {
    if (p.stream % 2 !== 1) throw codeError('EINVAL', `stream ${p.stream}: client streams use odd ids`);
    if (this.shutDown) throw codeError('ECONNABORTED', 'the agent is shutting down');
    if (this.entries.has(p.stream)) throw codeError('EEXIST', `stream ${p.stream} is already open`);
    if (net.isIP(p.host) === 0) throw codeError('EINVAL', `host must be an IP literal, got ${JSON.stringify(p.host)}`);
    if (p.protocol === 'udp') return this.connectUdp(p);

    const socket = net.connect({ host: p.host, port: p.port, allowHalfOpen: true });
    const entry: Entry = { socket };
    this.entries.set(p.stream, entry);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(codeError('ETIMEDOUT', `connect ${p.host}:${p.port} timed out after ${this.connectTimeoutMs} ms`));
        }, this.connectTimeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        // The client's CLOSE (it gave up) or our shutdown destroys the socket mid-connect.
        socket.once('close', () => {
          clearTimeout(timer);
          reject(codeError('ECONNABORTED', `connect ${p.host}:${p.port} aborted`));
        });
      });
    } catch (err) {
      socket.destroy();
      if (this.entries.get(p.stream) === entry) this.entries.delete(p.stream);
      throw err;
    }
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    if (this.shutDown || this.entries.get(p.stream) !== entry) {
      // closeAll ran between the connect and this continuation.
      socket.destroy();
      throw codeError('ECONNABORTED', `connect ${p.host}:${p.port} aborted`);
    }
    socket.setNoDelay(true);
    countConnection('outgoing', socket);

    const stream = new ApStream(p.stream, this.send, () => undefined);
    entry.stream = stream;
    const id = p.stream;
    const result = { localAddress: socket.localAddress ?? '', localPort: socket.localPort ?? 0 };
    const start = () => {
      this.log?.debug(`stream ${id}: connected to ${p.host}:${p.port} from ${result.localAddress}:${result.localPort}`);
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
        if (this.entries.get(id) === entry) this.entries.delete(id);
        // A socket closed by the remote before our stream finished (e.g. while waiting for credit)
        // leaves nothing to wait for.
        if (!stream.destroyed && stream.writableFinished && stream.readableEnded) stream.destroy();
      });
      socket.pipe(stream);
      stream.pipe(socket);
    };
    return { result, start };
  }

  /**
   * UDP: a connected datagram socket in the target's namespace; each DATA frame is one datagram.
   * It lives until the client closes the stream or the link ends (UDP has no end of its own).
   */
  private async connectUdp(p: ConnectParams): Promise<{ result: ConnectResult; start: () => void }> {
    const sock = dgram.createSocket(net.isIPv6(p.host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(p.port, p.host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const stream = new ApStream(p.stream, this.send, () => undefined);
    stream.datagram = true;
    // The entry's socket is what closeAll and CLOSE handling destroy: a thin net.Socket-like face.
    const face = { closed: false, destroy: () => void sock.close(), once: (_e: string, f: () => void) => sock.once('close', f) };
    const entry: Entry = { socket: face as unknown as net.Socket, stream };
    this.entries.set(p.stream, entry);
    sock.once('close', () => {
      face.closed = true;
      if (this.entries.get(p.stream) === entry) this.entries.delete(p.stream);
      stream.destroy();
    });
    const addr = sock.address();
    const result = { localAddress: addr.address, localPort: addr.port };
    const start = () => {
      sock.on('message', (msg) => stream.write(msg));
      sock.on('error', (err) => this.log?.debug(`udp stream ${p.stream}: ${err.message}`));
      stream.on('data', (d: Buffer) => sock.send(d));
      stream.on('close', () => {
        if (!face.closed) sock.close();
      });
      stream.on('error', () => undefined);
    };
    return { result, start };
  }

  /** A DATA frame's payload, in the pieces the link read it in. Dropped for streams we no longer know. */
  onData(channel: number, pieces: Buffer[], length: number): void {
    this.entries.get(channel)?.stream?.onData(pieces, length);
  }

  /** Stream frames from the client. Frames for streams we no longer know are dropped (they race with CLOSE). */
  onFrame(f: ApFrame): void {
    const entry = this.entries.get(f.channel);
    switch (f.kind) {
      case ApKind.DATA:
        entry?.stream?.onData(f.payload);
        return;
      case ApKind.EOF:
        entry?.stream?.onEof();
        return;
      case ApKind.CREDIT: {
        const n = decodeCredit(f);
        entry?.stream?.onCredit(n);
        return;
      }
      case ApKind.CLOSE: {
        const { error } = decodeClose(f);
        if (!entry) return;
        if (entry.stream) entry.stream.onClose(error);
        else entry.socket.destroy(); // still connecting: the client gave up
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
          if (socket.closed) return resolve();
          socket.once('close', () => resolve());
          stream?.linkLost(reason);
          socket.destroy();
        }),
    );
    this.entries.clear();
    await Promise.all(closing);
  }
}
