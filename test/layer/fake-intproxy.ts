/**
 * A scripted stand-in for the intproxy: speaks LP through common/protocol/layer/, records every
 * request (per connection) and answers from a per-test script. Anything the script does not
 * mention is answered "bypass", as the real intproxy does for traffic it leaves local.
 * It also checks the layer's side of the contract (HELLO first, ids counting from 1) and lists
 * violations in `violations`, which every test asserts empty.
 */
import { once } from 'node:events';
import net from 'node:net';
import {
  FS_ZERO_STAT,
  LpFrameReader,
  LpStatus,
  decodeRequest,
  encodeResponse,
  type LpAddr,
  type LpRequest,
  type LpResponse,
} from '../../common/protocol/layer/index.js';

export interface FakeScript {
  /** name -> addresses (v4 and/or v6 text), or a negative EAI status (-2 = EAI_NONAME). */
  dns?: Record<string, string[] | number>;
  canonname?: Record<string, string>;
  /**
   * "ip:port" or "[v6]:port" -> local port to send the program to, or a negative errno. take: a
   * layer that offers to take a socket (fd passing) is told to, and to connect it to 127.0.0.1:viaPort.
   */
  connect?: Record<string, { viaPort: number; take?: boolean } | number>;
  /** Status for every LISTEN (default: bypass, the port stays local). */
  listen?: number;
  /**
   * ACCEPT / ACCEPT_TAKE by the peer (the placeholder's) port: the remote client, and for a layer
   * that can take it, the helper's id of the stolen connection. Unlisted peers: bypass.
   */
  accept?: (peerPort: number) => { remote: LpAddr; take?: string } | undefined;
  /** Status for every HELLO (default 0). */
  helloStatus?: number;
  /** Accept connections but never answer anything (a hung intproxy). */
  mute?: boolean;
  /** Remote files: path -> content (opened read-only); other paths are answered "bypass". */
  files?: Record<string, string>;
  /**
   * Requests whose answer is held back (a slow intproxy, without timing): it is sent when the
   * test calls release(), or just before the answer to the next request on that connection.
   */
  hold?: (req: LpRequest) => boolean;
}

export interface Recorded {
  conn: number;
  req: LpRequest;
}
/** A request without its id (distributes over the union, unlike a bare Omit). */
export type Call = LpRequest extends infer T ? (T extends unknown ? Omit<T, 'id'> : never) : never;

export class FakeIntproxy {
  readonly requests: Recorded[] = [];
  readonly violations: string[] = [];
  private connections = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly held: { socket: net.Socket; frame: Buffer }[] = [];
  private heldWaiters: (() => void)[] = [];
  private nextHandle = 1;
  private readonly handles = new Map<number, Buffer>();

  private constructor(
    private readonly server: net.Server,
    private readonly script: FakeScript,
  ) {}

  static async start(script: FakeScript = {}): Promise<FakeIntproxy> {
    const server = net.createServer();
    const fake = new FakeIntproxy(server, script);
    server.on('connection', (s) => fake.accept(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return fake;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }
  /** The value for MIRRORD_LAYER_ADDR. */
  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  hellos(): Extract<LpRequest, { kind: 'hello' }>[] {
    return this.requests.flatMap((r) => (r.req.kind === 'hello' ? [r.req] : []));
  }

  /** Requests other than HELLO, ids stripped, for order-insensitive or exact comparisons. */
  calls(): Call[] {
    return this.requests
      .filter((r) => r.req.kind !== 'hello')
      .map(({ req }) => {
        const { id: _id, ...rest } = req;
        return rest as Call;
      });
  }

  /** Resolves once an answer is being held back. */
  async holding(): Promise<void> {
    if (this.held.length > 0) return;
    await new Promise<void>((resolve) => this.heldWaiters.push(resolve));
  }

  /** Sends every held answer. */
  release(): void {
    for (const { socket, frame } of this.held.splice(0)) socket.write(frame);
  }

  /** Remote files still open (every OPEN answered "ok" minus every CLOSE). */
  get openFiles(): number {
    return this.handles.size;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    await once(this.server, 'close');
  }

  private accept(socket: net.Socket): void {
    const conn = ++this.connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const reader = new LpFrameReader();
    let expectId = 1;
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) {
          const req = decodeRequest(frame);
          if (expectId === 1 && req.kind !== 'hello') this.violations.push(`conn ${conn}: first request is ${req.kind}`);
          if (req.id !== expectId) this.violations.push(`conn ${conn}: id ${req.id}, expected ${expectId}`);
          expectId = req.id + 1;
          this.requests.push({ conn, req });
          if (this.script.mute) continue;
          const answer = encodeResponse(this.answer(req));
          // A held answer goes first, as a real intproxy answering in order would send it.
          for (let i = 0; i < this.held.length; i++) {
            if (this.held[i]!.socket === socket) socket.write(this.held.splice(i--, 1)[0]!.frame);
          }
          if (this.script.hold?.(req)) {
            this.held.push({ socket, frame: answer });
            for (const w of this.heldWaiters.splice(0)) w();
          } else {
            socket.write(answer);
          }
        }
      } catch (err) {
        this.violations.push(`conn ${conn}: ${(err as Error).message}`);
        socket.destroy();
      }
    });
  }

  private answer(req: LpRequest): LpResponse {
    switch (req.kind) {
      case 'hello':
        return { id: req.id, kind: 'hello', status: this.script.helloStatus ?? 0 };
      case 'connect': {
        const key = req.remote.family === 4 ? `${req.remote.address}:${req.remote.port}` : `[${req.remote.address}]:${req.remote.port}`;
        const rule = this.script.connect?.[key];
        const none: LpAddr = { family: 4, address: '0.0.0.0', port: 0 };
        if (rule === undefined) return { id: req.id, kind: 'connect', status: LpStatus.Bypass, via: none };
        if (typeof rule === 'number') return { id: req.id, kind: 'connect', status: rule, via: none };
        const status = rule.take && req.takeSocket ? LpStatus.TakeSocket : LpStatus.Ok;
        return { id: req.id, kind: 'connect', status, via: { family: 4, address: '127.0.0.1', port: rule.viaPort } };
      }
      case 'listen':
        return { id: req.id, kind: 'listen', status: this.script.listen ?? LpStatus.Bypass };
      case 'unlisten':
        return { id: req.id, kind: 'unlisten', status: 0 };
      case 'accept':
      case 'accept_take': {
        const none: LpAddr = { family: 4, address: '0.0.0.0', port: 0 };
        const a = this.script.accept?.(req.peer.port);
        if (req.kind === 'accept') return { id: req.id, kind: 'accept', status: a ? LpStatus.Ok : LpStatus.Bypass, remote: a?.remote ?? none };
        if (!a) return { id: req.id, kind: 'accept_take', status: LpStatus.Bypass, remote: none, take: '' };
        return a.take
          ? { id: req.id, kind: 'accept_take', status: LpStatus.TakeSocket, remote: a.remote, take: a.take }
          : { id: req.id, kind: 'accept_take', status: LpStatus.Ok, remote: a.remote, take: '' };
      }
      case 'getaddrinfo': {
        const rule = this.script.dns?.[req.node];
        const empty = { id: req.id, kind: 'getaddrinfo' as const, addresses: [], canonname: '' };
        if (rule === undefined) return { ...empty, status: LpStatus.Bypass };
        if (typeof rule === 'number') return { ...empty, status: rule };
        const addresses = rule
          .map((address) => ({ family: (net.isIPv4(address) ? 4 : 6) as 4 | 6, address }))
          .filter((a) => req.family === 0 || (req.family === 2) === (a.family === 4));
        if (addresses.length === 0) return { ...empty, status: -2 };
        return { ...empty, status: LpStatus.Ok, addresses, canonname: this.script.canonname?.[req.node] ?? '' };
      }
      case 'open': {
        const content = this.script.files?.[req.path];
        if (content === undefined) return { id: req.id, kind: 'open', status: LpStatus.Bypass, handle: 0, stat: FS_ZERO_STAT };
        const handle = this.nextHandle++;
        this.handles.set(handle, Buffer.from(content));
        const stat = { ...FS_ZERO_STAT, mode: 0o100444, nlink: 1, size: content.length, blksize: 4096, ino: handle };
        return { id: req.id, kind: 'open', status: LpStatus.Ok, handle, stat };
      }
      case 'read': {
        const data = this.handles.get(req.handle);
        if (!data) return { id: req.id, kind: 'read', status: -9, data: Buffer.alloc(0) };
        return { id: req.id, kind: 'read', status: 0, data: data.subarray(req.offset, req.offset + req.len) };
      }
      case 'close':
        return { id: req.id, kind: 'close', status: this.handles.delete(req.handle) ? 0 : -9 };
      case 'stat':
        return { id: req.id, kind: 'stat', status: LpStatus.Bypass, stat: FS_ZERO_STAT };
      case 'access':
      case 'readlink':
        // Paths this fake does not serve stay local.
        return req.kind === 'access'
          ? { id: req.id, kind: 'access', status: LpStatus.Bypass }
          : { id: req.id, kind: 'readlink', status: LpStatus.Bypass, target: '' };
      default:
        // Messages this fake does not script (the rest of files: test/layer/files-harness.ts) are violations.
        throw new Error(`unscripted ${req.kind} request`);
    }
  }
}
