/**
 * `outgoing.connect`: TCP connections made from the agent's network namespace (the target's), each
 * bridged to one AP stream. Half-close travels both ways (EOF <-> FIN); credit flow control lives in
 * ApStream, and pipe() pauses the socket while the stream has no credit.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { AP_INITIAL_WINDOW, encodeCredit, type ApMethods } from '../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../common/link/stream.js';
import type { Logger } from '../../common/log.js';
import { countConnection } from './metrics.js';
import { SocketStreams, codeError, type StreamEntry } from './socket-streams.js';

type ConnectParams = ApMethods['outgoing.connect']['params'];
type ConnectResult = ApMethods['outgoing.connect']['result'];

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
/**
 * What a TCP stream the client sends on is granted beyond AP_INITIAL_WINDOW: the agent's window is
 * MIRRORD_AGENT_STREAM_WINDOW, which the Kubernetes listener sets (AP_KUBE_STREAM_WINDOW).
 */
const extraWindow = () => Math.max(0, (Number(process.env.MIRRORD_AGENT_STREAM_WINDOW) || 0) - AP_INITIAL_WINDOW);

export class OutgoingStreams extends SocketStreams {
  constructor(
    private readonly send: FrameSink,
    log?: Logger,
    private readonly connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
  ) {
    super(log);
  }

  /**
   * Connects, and returns the result plus `start`, to be called right after the RESPONSE is sent:
   * no DATA may reach the client before it knows the stream exists.
   */
  async connect(p: ConnectParams): Promise<{ result: ConnectResult; start: () => void }> {
    if (net.isIP(p.host) === 0) throw codeError('EINVAL', `host must be an IP literal, got ${JSON.stringify(p.host)}`);
    const entry: StreamEntry = {};
    this.claim(p.stream, entry);
    if (p.protocol === 'udp') return this.connectUdp(p, entry);

    const socket = net.connect({ host: p.host, port: p.port, allowHalfOpen: true });
    entry.socket = socket;
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
      this.release(p.stream, entry);
      throw err;
    }
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    if (!this.stillWanted(p.stream, entry)) {
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
      this.splice(id, entry, socket, stream, `${p.host}:${p.port} from ${result.localAddress}:${result.localPort}`);
      // After the RESPONSE: the rest of the window, in one CREDIT.
      const extra = extraWindow();
      if (extra > 0) this.send(encodeCredit(id, extra));
    };
    return { result, start };
  }

  /**
   * UDP: a connected datagram socket in the target's namespace; each DATA frame is one datagram.
   * It lives until the client closes the stream or the link ends (UDP has no end of its own).
   */
  private async connectUdp(p: ConnectParams, entry: StreamEntry): Promise<{ result: ConnectResult; start: () => void }> {
    const sock = dgram.createSocket(net.isIPv6(p.host) ? 'udp6' : 'udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.connect(p.port, p.host, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      sock.close();
      this.release(p.stream, entry);
      throw err;
    }
    if (!this.stillWanted(p.stream, entry)) {
      sock.close();
      throw codeError('ECONNABORTED', `connect ${p.host}:${p.port} aborted`);
    }
    const stream = new ApStream(p.stream, this.send, () => undefined);
    stream.datagram = true;
    // The entry's socket is what closeAll and CLOSE handling destroy: a thin net.Socket-like face.
    const face = { closed: false, destroy: () => void sock.close(), once: (_e: string, f: () => void) => sock.once('close', f) };
    entry.socket = face;
    entry.stream = stream;
    sock.once('close', () => {
      face.closed = true;
      this.release(p.stream, entry);
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
}
