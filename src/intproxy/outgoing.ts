/**
 * Outgoing traffic on the intproxy side: a layer's connect() is routed by the outgoing settings
 * and filter; a remote one gets a stream from the agent and a local endpoint the program's own
 * socket is redirected to (a one-shot TCP listener, or a UDP relay), spliced to that stream.
 * Unix stream sockets whose path matches feature.network.outgoing.unix_streams get a one-shot
 * unix listener in a private directory, spliced to the path's socket inside the target.
 */
import dgram from 'node:dgram';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { recordFastPath } from '../../common/data-path-record.js';
import type { Logger } from '../../common/log.js';
import { LpStatus, type LpAddr, type LpRequest } from '../../common/protocol/layer/index.js';
import type { ResolvedFeatures } from '../config/schema.js';
import type { OutgoingAgentPort } from './agent-port.js';
import { connectErrno } from './errno.js';
import { TrafficFilter, isLoopback } from './filter.js';
import { listensOnLoopback } from './local-listeners.js';

export const NOWHERE: LpAddr = { family: 4, address: '0.0.0.0', port: 0 };

export interface OutgoingStats {
  connectsRemote: number;
  connectsBypassed: number;
  /** Remote connects the layer made itself with a socket from the target's socket helper. */
  connectsPassed?: number;
}

export interface OutgoingOptions {
  features: Pick<ResolvedFeatures, 'outgoing' | 'dns'>;
  log: Logger;
  stats: OutgoingStats;
  /** The names an IP was resolved from (DnsResolver's cache), for filters written with names. */
  namesOf: (ip: string) => string[];
  /** How long a redirected socket has to dial its one-shot local listener. */
  /** IntproxyOptions.ownNamespace: loopback ports with a listener here stay local. */
  ownNamespace?: boolean;
  acceptTimeoutMs?: number;
  /** The socket helper passed the session's test (docs/fast-path.md): remote connects of layers
   * that can take a socket get one instead of a stream. */
  fdPassing?: boolean;
  /**
   * Where the one-shot unix listeners go, when the program is in another mount namespace: a
   * directory it sees at the same path (the sidecar's /mirrord volume). Their directory is then
   * 0711 and each socket 0666, as the program may run as another user; else mkdtemp's 0700 in the
   * temporary directory.
   */
  unixListenDir?: string;
}

type Connect = Extract<LpRequest, { kind: 'connect' }>;

/**
 * feature.network.outgoing.unix_streams: regexes (JavaScript syntax; Rust's `(?P<name>` accepted)
 * searched anywhere in the path the program connects to, as mirrord does; anchor them (`^/run/app\.sock$`)
 * to match whole paths.
 */
export class UnixStreamPatterns {
  private readonly res: RegExp[];
  constructor(patterns: readonly string[] = []) {
    this.res = patterns.map((p) => new RegExp(p.replace(/\(\?P</g, '(?<')));
  }
  get empty(): boolean {
    return this.res.length === 0;
  }
  matches(path: string): boolean {
    return this.res.some((re) => re.test(path));
  }
}

export class Outgoing {
  private readonly filter: TrafficFilter;
  private readonly unixStreams: UnixStreamPatterns;
  /** The private directory (0700) of the one-shot unix listeners, made at the first match. */
  private unixDir: string | undefined;
  private unixCount = 0;
  private readonly sockets = new Set<net.Socket | net.Server | Duplex>();
  private readonly udpSockets = new Set<dgram.Socket>();

  constructor(
    private readonly agent: OutgoingAgentPort,
    private readonly opts: OutgoingOptions,
  ) {
    this.filter = TrafficFilter.compile(opts.features.outgoing.filter, 'feature.network.outgoing.filter');
    this.unixStreams = new UnixStreamPatterns(opts.features.outgoing.unix_streams);
  }

  /** Every socket, listener and agent stream of the data path. */
  close(): void {
    for (const u of this.udpSockets) u.close();
    this.udpSockets.clear();
    for (const s of this.sockets) {
      if (s instanceof net.Server) s.close();
      else s.destroy();
    }
    this.sockets.clear();
    if (this.unixDir) rmSync(this.unixDir, { recursive: true, force: true });
    this.unixDir = undefined;
  }

  private track<T extends net.Socket | net.Server | Duplex>(s: T): T {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return s;
  }

  async connect(req: Connect): Promise<{ status: number; via: LpAddr }> {
    const { address: ip, port } = req.remote;
    const { features, log, stats } = this.opts;
    const out = features.outgoing;
    const bypass = (why: string) => {
      stats.connectsBypassed++;
      log.debug(`connect ${ip}:${port} stays local (${why})`);
      return { status: LpStatus.Bypass, via: NOWHERE };
    };
    const udp = req.proto === 'udp';
    if (udp && !this.agent.capabilities.udp) return bypass('the agent link carries no UDP');
    if (udp ? !out.udp : !out.tcp) return bypass(`feature.network.outgoing.${req.proto} is false`);
    // DNS over UDP follows the DNS setting: with remote DNS off, resolvers talk to local servers.
    if (udp && port === 53 && !features.dns.enabled) return bypass('feature.network.dns.enabled is false');
    if (out.ignore_localhost && isLoopback(ip)) return bypass('ignore_localhost');
    if (this.opts.ownNamespace && !udp && isLoopback(ip) && (await listensOnLoopback(port))) return bypass('a local program listens on that port');
    const names = this.opts.namesOf(ip);
    if (this.filter.route({ proto: req.proto, ip, port, names }) === 'local') return bypass('outgoing filter');

    if (this.opts.fdPassing && req.takeSocket) {
      // The bytes then flow between the program and the remote in the kernel; the agent never sees them.
      stats.connectsRemote++;
      stats.connectsPassed = (stats.connectsPassed ?? 0) + 1;
      recordFastPath();
      log.debug(`connect ${ip}:${port}: the layer takes a socket made in the target`);
      return { status: LpStatus.TakeSocket, via: req.remote };
    }
    let remote: Duplex;
    try {
      remote = this.track(await (udp ? this.agent.connectUdp(ip, port) : this.agent.connectTcp(ip, port)));
    } catch (err) {
      const code = (err as { code?: string }).code;
      log.debug(`connect ${ip}:${port} through the target failed: ${code ?? (err as Error).message}`);
      return { status: connectErrno(code), via: NOWHERE };
    }
    stats.connectsRemote++;
    const viaPort = udp ? await this.udpRelay(remote, `${ip}:${port}`) : await this.oneShotListener(remote, `${ip}:${port}`);
    return { status: LpStatus.Ok, via: { family: 4, address: '127.0.0.1', port: viaPort } };
  }

  /**
   * A unix stream socket's connect() to `path`: a match of unix_streams reaches the socket of that
   * path in the target, through the agent; anything else stays local (Bypass).
   */
  async connectUnix(p: string): Promise<{ status: number; via: string }> {
    const { log, stats } = this.opts;
    if (!this.unixStreams.matches(p)) return { status: LpStatus.Bypass, via: '' };
    if (!this.agent.connectUnix) {
      log.debug(`unix socket ${p} stays local: the agent link carries no unix streams`);
      return { status: LpStatus.Bypass, via: '' };
    }
    let remote: Duplex;
    try {
      remote = this.track(await this.agent.connectUnix(p));
    } catch (err) {
      const code = (err as { code?: string }).code;
      log.debug(`unix socket ${p} in the target: ${code ?? (err as Error).message}`);
      return { status: connectErrno(code), via: '' };
    }
    stats.connectsRemote++;
    try {
      return { status: LpStatus.Ok, via: await this.oneShotUnixListener(remote, p) };
    } catch (err) {
      remote.destroy();
      log.warn(`unix socket ${p}: no local listener: ${(err as Error).message}`);
      return { status: connectErrno('ENETUNREACH'), via: '' };
    }
  }

  private async oneShotUnixListener(remote: Duplex, label: string): Promise<string> {
    // mkdtemp makes the directory 0700: only this user reaches the sockets in it.
    // A long TMPDIR would not leave room in sun_path (108 bytes).
    const shared = this.opts.unixListenDir;
    const base = shared ?? (os.tmpdir().length <= 64 ? os.tmpdir() : '/tmp');
    if (!this.unixDir) {
      this.unixDir = mkdtempSync(path.join(base, 'mirrord-unix-'));
      if (shared) chmodSync(this.unixDir, 0o711);
    }
    const at = path.join(this.unixDir, String(++this.unixCount));
    // libuv unlinks the socket file when the listener closes.
    await this.oneShot(remote, label, (l, ready) => l.listen(at, ready));
    if (shared) chmodSync(at, 0o666);
    return at;
  }

  private async oneShotListener(remote: Duplex, label: string): Promise<number> {
    const listener = await this.oneShot(
      remote,
      label,
      (l, ready) => l.listen(0, '127.0.0.1', ready),
      (local) => local.setNoDelay(true),
    );
    return (listener.address() as net.AddressInfo).port;
  }

  /**
   * The program's own socket connects to this listener right after our answer; its bytes then flow
   * between it and the agent stream with Node's backpressure on both sides. A program that never
   * connects loses the stream after acceptTimeoutMs.
   */
  private async oneShot(
    remote: Duplex,
    label: string,
    listen: (l: net.Server, ready: () => void) => void,
    onLocal?: (local: net.Socket) => void,
  ): Promise<net.Server> {
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
      onLocal?.(local);
      splice(local, remote);
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listen(listener, () => resolve());
    });
    return listener;
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
