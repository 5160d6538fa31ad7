import dgram from 'node:dgram';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import {
  LpFrameReader,
  LpProtocolError,
  LpStatus,
  decodeRequest,
  encodeResponse,
  type LpRequest,
  type LpResponse,
} from '../../common/protocol/layer/index.js';
import type { ResolvedFeatures } from '../config/schema.js';
import { TrafficFilter, isLoopback } from './filter.js';
import { EAI, connectErrno, dnsStatus } from './errno.js';
import { FileProxy, type FileAgentPort } from './files.js';
import { IncomingManager, type IncomingAgentPort } from './incoming.js';

/** What the intproxy needs of the agent link (an AgentConnection, or a test double below it). */
export interface AgentPort {
  connectTcp(host: string, port: number): Promise<Duplex>;
  /** Optional: without it UDP stays local. */
  connectUdp?(host: string, port: number): Promise<Duplex>;
  request(method: 'dns.lookup', params: { name: string; family: 0 | 4 | 6 }): Promise<{
    addresses: { address: string; family: number }[];
    canonname?: string;
  }>;
}

export interface IntproxyOptions {
  agent: AgentPort;
  features: ResolvedFeatures;
  log: Logger;
  /** How long a redirected socket has to dial its one-shot local listener. */
  acceptTimeoutMs?: number;
  /** Runs before the first port is subscribed (the platform's guard for the agent's rules). */
  beforeIncoming?: () => Promise<void>;
}

export interface IntproxyStats {
  layers: number;
  connectsRemote: number;
  connectsBypassed: number;
  lookups: number;
}

const NOWHERE = { family: 4 as const, address: '0.0.0.0', port: 0 };

/**
 * One per session: accepts the layer connection of every process of the program, answers its
 * requests, and owns the local sockets of the data path (payload never passes through the layer).
 */
export class Intproxy {
  readonly stats: IntproxyStats = { layers: 0, connectsRemote: 0, connectsBypassed: 0, lookups: 0 };
  private readonly outgoingFilter: TrafficFilter;
  private readonly dnsFilter: TrafficFilter;
  /** Remote DNS answers, so a filter written with names can match a connect() to an IP. */
  private readonly namesByIp = new Map<string, Set<string>>();
  private readonly sockets = new Set<net.Socket | net.Server | Duplex>();
  private readonly udpSockets = new Set<dgram.Socket>();
  /** Remote files (src/intproxy/files.ts). */
  readonly files: FileProxy;
  /** Incoming traffic (src/intproxy/incoming.ts), when the agent link can carry it. */
  readonly incoming?: IncomingManager;
  private nextConn = 1;

  private constructor(
    private readonly server: net.Server,
    private readonly opts: IntproxyOptions,
  ) {
    this.outgoingFilter = TrafficFilter.compile(opts.features.outgoing.filter, 'feature.network.outgoing.filter');
    this.dnsFilter = TrafficFilter.compile(opts.features.dns.filter, 'feature.network.dns.filter');
    const fileAgent = typeof (opts.agent as Partial<FileAgentPort>).request === 'function' ? (opts.agent as unknown as FileAgentPort) : undefined;
    this.files = new FileProxy(fileAgent, opts.features.fs, opts.log.child('files'));
    const inc = opts.agent as unknown as Partial<IncomingAgentPort>;
    if (typeof inc.onIncoming === 'function') this.incoming = new IncomingManager(inc as IncomingAgentPort, opts.features, opts.log.child('incoming'), opts.beforeIncoming);
  }

  static async start(opts: IntproxyOptions, host = '127.0.0.1'): Promise<Intproxy> {
    const server = net.createServer();
    const proxy = new Intproxy(server, opts);
    server.on('connection', (sock) => proxy.onLayer(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    return proxy;
  }

  /** The value of MIRRORD_LAYER_ADDR. */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    this.incoming?.close();
    for (const u of this.udpSockets) u.close();
    this.udpSockets.clear();
    for (const s of this.sockets) {
      if (s instanceof net.Server) s.close();
      else s.destroy();
    }
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track<T extends net.Socket | net.Server | Duplex>(s: T): T {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return s;
  }

  private onLayer(sock: net.Socket): void {
    this.track(sock);
    sock.setNoDelay(true);
    this.stats.layers++;
    const log = this.opts.log;
    const reader = new LpFrameReader();
    let who = 'layer';
    const conn = this.nextConn++;
    sock.once('close', () => {
      this.files.onConnectionClosed(conn);
      void this.incoming?.dropOwner(conn);
    });
    sock.on('data', (chunk) => {
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
          log.debug(`layer connected: ${who}`);
          this.files.onHello(conn, req.pid, req.parentPid);
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
    switch (req.kind) {
      case 'open': case 'read': case 'write': case 'close': case 'stat': case 'access': case 'readlink':
      case 'getdents': case 'mkdir': case 'unlink': case 'rename':
        return this.files.handle(conn, req);
      case 'hello':
        return { id: req.id, kind: 'hello', status: 0 };
      case 'connect':
        return { id: req.id, kind: 'connect', ...(await this.connect(req)) };
      case 'getaddrinfo':
        return { id: req.id, kind: 'getaddrinfo', ...(await this.lookup(req)) };
      case 'listen':
        return { id: req.id, kind: 'listen', status: this.incoming ? await this.incoming.listen(conn, req.requested, req.bound) : LpStatus.Bypass };
      case 'unlisten':
        await this.incoming?.unlisten(conn, req.requested.port);
        return { id: req.id, kind: 'unlisten', status: 0 };
      case 'accept': {
        const remote = await this.incoming?.remoteOf(req.peer.port);
        return remote ? { id: req.id, kind: 'accept', status: LpStatus.Ok, remote } : { id: req.id, kind: 'accept', status: LpStatus.Bypass, remote: NOWHERE };
      }
    }
  }

  private async connect(req: Extract<LpRequest, { kind: 'connect' }>): Promise<{ status: number; via: typeof NOWHERE }> {
    const { address: ip, port } = req.remote;
    const out = this.opts.features.outgoing;
    const bypass = (why: string) => {
      this.stats.connectsBypassed++;
      this.opts.log.debug(`connect ${ip}:${port} stays local (${why})`);
      return { status: LpStatus.Bypass, via: NOWHERE };
    };
    const udp = req.proto === 'udp';
    if (udp && !this.opts.agent.connectUdp) return bypass('the agent link carries no UDP');
    if (udp ? !out.udp : !out.tcp) return bypass(`feature.network.outgoing.${req.proto} is false`);
    // DNS over UDP follows the DNS setting: with remote DNS off, resolvers talk to local servers.
    if (udp && port === 53 && !this.opts.features.dns.enabled) return bypass('feature.network.dns.enabled is false');
    if (out.ignore_localhost && isLoopback(ip)) return bypass('ignore_localhost');
    const names = [...(this.namesByIp.get(ip) ?? [])];
    if (this.outgoingFilter.route({ proto: req.proto, ip, port, names }) === 'local') return bypass('outgoing filter');

    let remote: Duplex;
    try {
      remote = this.track(await (udp ? this.opts.agent.connectUdp!(ip, port) : this.opts.agent.connectTcp(ip, port)));
    } catch (err) {
      const code = (err as { code?: string }).code;
      this.opts.log.debug(`connect ${ip}:${port} through the target failed: ${code ?? (err as Error).message}`);
      return { status: connectErrno(code), via: NOWHERE };
    }
    this.stats.connectsRemote++;
    const viaPort = udp ? await this.udpRelay(remote, `${ip}:${port}`) : await this.oneShotListener(remote, `${ip}:${port}`);
    return { status: LpStatus.Ok, via: { family: 4, address: '127.0.0.1', port: viaPort } };
  }

  /**
   * The program's own socket connects here right after our answer; its bytes then flow between it
   * and the agent stream with Node's backpressure on both sides.
   */
  private async oneShotListener(remote: Duplex, label: string): Promise<number> {
    const listener = this.track(net.createServer({ allowHalfOpen: true }));
    const timer = setTimeout(() => {
      this.opts.log.warn(`the program never used its connection to ${label}; dropped`);
      listener.close();
      remote.destroy();
    }, this.opts.acceptTimeoutMs ?? 15_000);
    listener.once('connection', (local) => {
      clearTimeout(timer);
      listener.close();
      this.track(local);
      local.setNoDelay(true);
      splice(local, remote);
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', () => resolve());
    });
    return (listener.address() as net.AddressInfo).port;
  }

  /**
   * The local end of a UDP flow: the program's connected socket sends here, and answers go back to
   * whichever local address sent last. Idle flows are closed (UDP never says it is done).
   */
  private async udpRelay(remote: Duplex, label: string, idleMs = 60_000): Promise<number> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, '127.0.0.1', () => resolve());
    });
    let peer: { address: string; port: number } | undefined;
    let timer: NodeJS.Timeout | undefined;
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.opts.log.debug(`udp flow to ${label} idle: closed`);
        remote.destroy();
      }, idleMs);
      timer.unref();
    };
    touch();
    sock.on('message', (msg, rinfo) => {
      peer = { address: rinfo.address, port: rinfo.port };
      touch();
      remote.write(msg);
    });
    remote.on('data', (d: Buffer) => {
      touch();
      if (peer) sock.send(d, peer.port, peer.address);
    });
    const done = () => {
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
    };
    remote.once('close', done);
    remote.once('error', done);
    sock.on('error', () => remote.destroy());
    this.udpSockets.add(sock);
    sock.once('close', () => this.udpSockets.delete(sock));
    return sock.address().port;
  }

  private async lookup(req: Extract<LpRequest, { kind: 'getaddrinfo' }>) {
    const none = { addresses: [] as { family: 4 | 6; address: string }[], canonname: '' };
    const dns = this.opts.features.dns;
    if (!dns.enabled || this.dnsFilter.route({ proto: 'udp', names: [req.node] }) === 'local') {
      return { status: LpStatus.Bypass, ...none };
    }
    const family = req.family === 2 ? 4 : req.family === 10 ? 6 : 0;
    this.stats.lookups++;
    try {
      const res = await this.opts.agent.request('dns.lookup', { name: req.node, family });
      const addresses = res.addresses
        .filter((a) => a.family === 4 || a.family === 6)
        .map((a) => ({ family: a.family as 4 | 6, address: a.address }));
      for (const a of addresses) {
        const set = this.namesByIp.get(a.address) ?? new Set<string>();
        set.add(req.node.toLowerCase());
        this.namesByIp.set(a.address, set);
      }
      if (addresses.length === 0) return { status: EAI.NODATA, ...none };
      this.opts.log.debug(`resolved ${req.node} in the target: ${addresses.map((a) => a.address).join(', ')}`);
      return { status: LpStatus.Ok, addresses, canonname: res.canonname ?? req.node };
    } catch (err) {
      const code = (err as { code?: string }).code;
      this.opts.log.debug(`lookup ${req.node} in the target failed: ${code ?? (err as Error).message}`);
      return { status: dnsStatus(code), ...none };
    }
  }
}

/**
 * Joins two byte streams both ways. A FIN travels as a half-close (pipe ends the other side), and
 * both streams then close themselves once flushed; an error on either tears both down at once.
 */
export function splice(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const teardown = () => {
    a.destroy();
    b.destroy();
  };
  a.once('error', teardown);
  b.once('error', teardown);
}
