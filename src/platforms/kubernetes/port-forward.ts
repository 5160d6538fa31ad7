/**
 * The byte link to an agent pod through the API server's port-forward (the `portforward` pod
 * subresource over WebSocket, channel protocol v4, as kubectl uses it). Channel 0 carries data,
 * channel 1 errors; the first frame of each channel starts with the port number. We speak it with
 * `ws` directly rather than through client-node's PortForward so that writes honour backpressure
 * and a failure on either channel ends the stream with a reason.
 *
 * The agent's listener writes a banner first, so "the port-forward reached a live listener" is known
 * before the AP handshake: until then, a refused dial is retried.
 */
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as k8s from '@kubernetes/client-node';
import WebSocket from 'ws';
import { AP_LISTENER_BANNER } from '../../../common/protocol/agent/index.js';

const LISTENER_BANNER = Buffer.from(AP_LISTENER_BANNER);
const PROTOCOL = 'v4.channel.k8s.io';
const DATA_CHANNEL = Buffer.from([0]);
/** Batched writes are cut into messages of about this size, so no message grows with the backlog. */
const MESSAGE_BYTES = 1024 * 1024;
/**
 * The masking key of every frame we send: all zeros, which ws takes as "nothing to mask", so a
 * message goes out as it is instead of being copied and XORed byte by byte (in JavaScript without
 * the optional bufferutil add-on: 1.6 of the CLI's 5 busy seconds for a 256 MiB upload,
 * bench/README.md). RFC 6455 requires client frames to carry a key, not a random one here: the
 * key protects HTTP intermediaries that could be made to cache attacker-chosen bytes, which a TLS
 * connection to the API server from a non-browser client does not expose. Any server accepts it:
 * the frame is well formed.
 */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

/**
 * A port-forwarded TCP connection as a Duplex; errors name what failed. The listener's banner is
 * taken off the front of the data and settles `banner`, so readers only ever see AP bytes.
 */
class PortForwardStream extends Duplex {
  private seenPort = [false, false];
  private errorText = '';
  private head = Buffer.alloc(0);
  private bannerDone = false;
  readonly banner: Promise<void>;
  private settleBanner!: (err?: Error) => void;

  constructor(
    private readonly ws: WebSocket,
    private readonly port: number,
  ) {
    super();
    this.banner = new Promise<void>((resolve, reject) => {
      this.settleBanner = (err) => {
        if (this.bannerDone) return;
        this.bannerDone = true;
        if (err) reject(err);
        else resolve();
      };
    });
    // A stream that fails before anyone awaits the banner must not become an unhandled rejection.
    this.banner.catch(() => undefined);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length < 1) return;
      const channel = data[0]!;
      let payload = data.subarray(1);
      // Each channel starts with the port number (2 bytes, little-endian), but the kubelet sends it
      // from another goroutine than the data, so it may come after the first data frame. Nothing
      // else can look like it here: the first data is the listener's banner, and the port is never
      // the banner's first two bytes.
      if (channel <= 1 && !this.seenPort[channel] && payload.length >= 2 && payload.readUInt16LE(0) === this.port) {
        this.seenPort[channel] = true;
        payload = payload.subarray(2);
      }
      if (channel === 0) this.onData(payload);
      else if (channel === 1 && payload.length) this.errorText += payload.toString();
    });
    ws.on('close', (code, reason) => {
      const err = this.errorText
        ? new Error(`port-forward: ${this.errorText.trim()}`)
        : code !== 1000 && code !== 1005
          ? new Error(`port-forward closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`)
          : undefined;
      this.settleBanner(err ?? new Error('the agent listener closed the connection'));
      if (err) this.destroy(err);
      else this.push(null);
    });
    ws.on('error', (err: Error & { statusCode?: number }) => {
      const e = Object.assign(new Error(err.statusCode ? err.message : `port-forward: ${err.message}`), { statusCode: err.statusCode });
      this.settleBanner(e);
      this.destroy(e);
    });
  }

  private onData(payload: Buffer): void {
    if (!this.bannerDone) {
      this.head = Buffer.concat([this.head, payload]);
      if (this.head.length < LISTENER_BANNER.length) return;
      if (!this.head.subarray(0, LISTENER_BANNER.length).equals(LISTENER_BANNER)) {
        this.settleBanner(new Error('the port does not belong to a mirrord agent'));
        this.destroy();
        return;
      }
      payload = this.head.subarray(LISTENER_BANNER.length);
      this.head = Buffer.alloc(0);
      this.settleBanner();
    }
    if (payload.length && !this.push(payload)) this.ws.pause();
  }

  override _read(): void {
    this.ws.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendChunks([chunk], cb);
  }

  /**
   * Everything written while the last message was on its way (an AP frame's header and payload
   * come as two writes) goes as one message per MESSAGE_BYTES: one copy to put the channel byte in
   * front, which ws then writes as it is (zeroMask).
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.sendChunks(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  private sendChunks(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) return cb(new Error('port-forward is closed'));
    const messages: Buffer[][] = [[DATA_CHANNEL]];
    let size = 0;
    for (const c of chunks) {
      if (size > 0 && size + c.length > MESSAGE_BYTES) {
        messages.push([DATA_CHANNEL]);
        size = 0;
      }
      messages[messages.length - 1]!.push(c);
      size += c.length;
    }
    let left = messages.length;
    let failed: Error | undefined;
    for (const m of messages) {
      this.ws.send(Buffer.concat(m), { binary: true }, (err) => {
        failed ??= err;
        if (--left === 0) cb(failed ?? null);
      });
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ws.close(1000);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    cb(err);
  }
}

/**
 * Starts the WebSocket; the caller attaches its handlers before returning to the event loop, because
 * the first frames can arrive in the same read as the upgrade response. A refused upgrade (RBAC, no
 * such pod) is emitted as an 'error' carrying the HTTP status and the API's message.
 */
async function openWebSocket(kc: k8s.KubeConfig, namespace: string, pod: string, port: number): Promise<WebSocket> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in the kubeconfig');
  const url = `${cluster.server.replace(/^http/, 'ws')}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${port}`;
  // No permessage-deflate offer (ws makes one by default; the kubelet declines it, but a proxy that
  // accepted it would compress every AP byte for little gain), and the zero masking key.
  const opts: WebSocket.ClientOptions = { perMessageDeflate: false, generateMask: zeroMask };
  await kc.applyToHTTPSOptions(opts);
  const ws = new WebSocket(url, [PROTOCOL], opts);
  ws.once('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    res.on('end', () => {
      let msg = body.slice(0, 300);
      try {
        msg = (JSON.parse(body) as { message?: string }).message ?? msg;
      } catch {
        // Not a Status object.
      }
      ws.emit('error', Object.assign(new Error(`HTTP ${res.statusCode}: ${msg}`), { statusCode: res.statusCode }));
    });
  });
  return ws;
}

/** Opens the stream and waits for the listener's banner; rejects if the dial fails. */
export async function connectOnce(kc: k8s.KubeConfig, namespace: string, pod: string, port: number, timeoutMs = 5000): Promise<Duplex> {
  const stream = new PortForwardStream(await openWebSocket(kc, namespace, pod, port), port);
  // Until the banner, a failure is reported through the rejected promise, not as an 'error' event.
  const swallow = () => undefined;
  stream.on('error', swallow);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      stream.banner,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer from the agent listener')), timeoutMs))),
    ]);
    stream.off('error', swallow);
    return stream;
  } catch (err) {
    stream.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Retries connectOnce until the listener answers or the deadline passes; the last error explains. */
export async function connectAgent(
  kc: k8s.KubeConfig,
  namespace: string,
  pod: string,
  port: number,
  deadline: number,
  isAlive: () => Promise<void>,
  log?: (msg: string) => void,
): Promise<Duplex> {
  let last: Error | undefined;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    try {
      return await connectOnce(kc, namespace, pod, port);
    } catch (err) {
      last = err as Error;
      log?.(`port-forward attempt ${attempt + 1}: ${last.message}`);
      // RBAC and missing pods do not fix themselves.
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 403 || status === 401 || status === 404) throw err;
      await isAlive();
      await sleep(Math.min(50 * 2 ** attempt, attempt < 15 ? 200 : 1000));
    }
  }
  throw last ?? new Error('timed out');
}
