/**
 * The layer side of the intproxy: accepts the LP connection of every process of the program,
 * reads its frames, hands each request to the part that serves it and writes the answers back.
 * A connection is numbered; files and incoming listeners are held per connection (a process), and
 * let go when it ends.
 */
import net from 'node:net';
import type { Logger } from '../../common/log.js';
import { LpFrameReader, LpProtocolError, LpStatus, decodeRequest, encodeResponse, type LpRequest, type LpResponse } from '../../common/protocol/layer/index.js';
import type { DnsResolver } from './dns.js';
import type { FileProxy } from './files.js';
import type { IncomingManager } from './incoming.js';
import { NOWHERE, type Outgoing } from './outgoing.js';

/** The parts that answer the layers' requests. */
export interface LayerHandlers {
  files: Pick<FileProxy, 'handle' | 'onHello' | 'onConnectionClosed'>;
  outgoing: Pick<Outgoing, 'connect' | 'connectUnix'>;
  dns: Pick<DnsResolver, 'lookup'>;
  /** Absent when the agent link carries no incoming traffic: every listen() stays local. */
  incoming?: Pick<IncomingManager, 'listen' | 'unlisten' | 'remoteOf' | 'takeOf' | 'dropOwner'>;
  /** feature.env.load_from_process: the environment the layer of the first process applies. */
  env?: ProgramEnv;
}

/** Entries per ENV answer: well inside a frame for any ordinary variable. */
const ENV_PAGE = 64;

/**
 * feature.env.load_from_process: the environment the CLI computed for the program (what to set,
 * what to unset, against the environment it started the program with), handed to the first
 * process that asks (its layer applies it before main(); its children inherit it from there).
 */
export class ProgramEnv {
  private entries: { name: string; value?: string }[] | undefined;
  private owner: number | undefined;

  set(entries: { name: string; value?: string }[]): void {
    this.entries = entries;
  }

  /** The page from `start` for connection `conn`; undefined: nothing for it. */
  page(conn: number, start: number): { total: number; entries: { name: string; value?: string }[] } | undefined {
    if (!this.entries) return undefined;
    this.owner ??= conn;
    if (this.owner !== conn) return undefined;
    return { total: this.entries.length, entries: this.entries.slice(start, start + ENV_PAGE) };
  }
}

export interface LayerStats {
  layers: number;
}

/** internal_proxy settings the layer side applies (src/intproxy/intproxy.ts). */
export interface LayerServerOptions {
  /** A connection without a request for this long is closed (internal_proxy.socket_timeout). */
  socketTimeoutMs?: number;
  /** Called with the number of connected processes whenever it changes. */
  onCount?: (open: number) => void;
}

/** A process connected to the intproxy, as its HELLO told. */
export interface LayerProcess {
  pid?: number;
  parentPid?: number;
  exe?: string;
  since: number;
}

export class LayerServer {
  private readonly sockets = new Map<net.Socket, LayerProcess>();
  private nextConn = 1;

  private constructor(
    private readonly server: net.Server,
    private readonly handlers: LayerHandlers,
    private readonly log: Logger,
    private readonly stats: LayerStats,
    private readonly opts: LayerServerOptions,
  ) {
    server.on('connection', (sock) => this.onLayer(sock));
  }

  static async listen(host: string, handlers: LayerHandlers, log: Logger, stats: LayerStats, opts: LayerServerOptions = {}): Promise<LayerServer> {
    const server = net.createServer();
    const layers = new LayerServer(server, handlers, log, stats, opts);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    return layers;
  }

  /** host:port, the value of MIRRORD_LAYER_ADDR. */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.address}:${a.port}`;
  }

  /** The processes connected now. */
  processes(): LayerProcess[] {
    return [...this.sockets.values()];
  }

  /** Drops every layer connection; resolves once the listener is closed. */
  async close(): Promise<void> {
    for (const s of this.sockets.keys()) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onLayer(sock: net.Socket): void {
    const proc: LayerProcess = { since: Date.now() };
    this.sockets.set(sock, proc);
    this.opts.onCount?.(this.sockets.size);
    sock.setNoDelay(true);
    this.stats.layers++;
    const { log, handlers } = this;
    const reader = new LpFrameReader();
    let who = 'layer';
    const conn = this.nextConn++;
    if (this.opts.socketTimeoutMs) {
      sock.setTimeout(this.opts.socketTimeoutMs, () => {
        log.info(`${who}: no request for ${this.opts.socketTimeoutMs! / 1000} s (internal_proxy.socket_timeout): closing its connection`);
        sock.destroy();
      });
    }
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.opts.onCount?.(this.sockets.size);
      handlers.files.onConnectionClosed(conn);
      void handlers.incoming?.dropOwner(conn);
    });
    sock.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        log.warn(`${who}: bad frame, closing: ${(err as Error).message}`);
        sock.destroy();
        return;
      }
      for (const frame of frames) {
        let req: LpRequest;
        try {
          req = decodeRequest(frame);
        } catch (err) {
          log.warn(`${who}: ${err instanceof LpProtocolError ? err.message : String(err)}`);
          sock.destroy();
          return;
        }
        if (req.kind === 'hello') {
          who = `pid ${req.pid}${req.parentPid ? ` (forked from ${req.parentPid})` : ''} ${req.exe}`;
          Object.assign(proc, { pid: req.pid, parentPid: req.parentPid || undefined, exe: req.exe });
          log.debug(`layer connected: ${who}`);
          handlers.files.onHello(conn, req.pid, req.parentPid);
        }
        this.handle(req, conn).then(
          (resp) => sock.writable && sock.write(encodeResponse(resp)),
          (err) => {
            log.error(`${who}: ${req.kind} failed unexpectedly`, err);
            sock.destroy();
          },
        );
      }
    });
    sock.on('error', (err) => log.debug(`${who}: ${err.message}`));
  }

  private async handle(req: LpRequest, conn: number): Promise<LpResponse> {
    const { files, outgoing, dns, incoming } = this.handlers;
    switch (req.kind) {
      case 'open':
      case 'read':
      case 'write':
      case 'close':
      case 'stat':
      case 'access':
      case 'readlink':
      case 'getdents':
      case 'mkdir':
      case 'unlink':
      case 'rename':
        return files.handle(conn, req);
      case 'hello':
        return { id: req.id, kind: 'hello', status: 0 };
      case 'connect':
        return { id: req.id, kind: 'connect', ...(await outgoing.connect(req)) };
      case 'connect_unix':
        return { id: req.id, kind: 'connect_unix', ...(await outgoing.connectUnix(req.path)) };
      case 'getaddrinfo':
        return { id: req.id, kind: 'getaddrinfo', ...(await dns.lookup(req)) };
      case 'listen':
        return { id: req.id, kind: 'listen', status: incoming ? await incoming.listen(conn, req.requested, req.bound) : LpStatus.Bypass };
      case 'unlisten':
        await incoming?.unlisten(conn, req.requested.port);
        return { id: req.id, kind: 'unlisten', status: 0 };
      case 'accept': {
        const remote = await incoming?.remoteOf(req.peer.port);
        return remote ? { id: req.id, kind: 'accept', status: LpStatus.Ok, remote } : { id: req.id, kind: 'accept', status: LpStatus.Bypass, remote: NOWHERE };
      }
      case 'env': {
        const page = this.handlers.env?.page(conn, req.start);
        return page ? { id: req.id, kind: 'env', status: LpStatus.Ok, ...page } : { id: req.id, kind: 'env', status: LpStatus.Bypass, total: 0, entries: [] };
      }
      case 'accept_take': {
        const r = await incoming?.takeOf(req.peer.port);
        if (!r) return { id: req.id, kind: 'accept_take', status: LpStatus.Bypass, remote: NOWHERE, take: '' };
        return r.take
          ? { id: req.id, kind: 'accept_take', status: LpStatus.TakeSocket, remote: r.remote, take: r.take }
          : { id: req.id, kind: 'accept_take', status: LpStatus.Ok, remote: r.remote, take: '' };
      }
    }
  }
}
