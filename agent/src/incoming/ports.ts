/**
 * The agent's ports: one listener and one REDIRECT per target port, whatever number of sessions
 * subscribe it, all in the agent's own chain. Each accepted connection is routed among the port's
 * subscribers:
 * - an unfiltered steal holding the port (the only stealer, or an `override`): the whole connection;
 * - filtered steals: each HTTP request to the first session whose filter matches (per request on
 *   HTTP/1.1 keep-alive, per stream on h2c), the rest to an unfiltered `continue` steal if one
 *   shares the port, else to the target's own application;
 * - mirrors only: passed through to the application, a copy of the client's bytes to each mirror.
 * One PortTable per agent process; each session's IncomingService (service.ts) subscribes in it.
 */
import net from 'node:net';
import type { ApOpen, ApSessionInfo } from '../../../common/protocol/agent/index.js';
import type { ApStream } from '../../../common/link/stream.js';
import type { Logger } from '../../../common/log.js';
import { matches as matchesFilter, serveFiltered, type CompiledFilter } from './http-filter.js';
import { Iptables, sweepStaleChains } from './iptables.js';

/** A mirror copy may lag this far behind the real traffic before it is dropped. */
const MIRROR_MAX_LAG = 4 * 1024 * 1024;

export type ConcurrentSteal = 'abort' | 'continue' | 'override';

/** One session's subscription of one port. */
export interface Subscriber {
  /** The session's id and its client's name (messages, `mirrord status`). */
  session: string;
  client: string;
  port: number;
  mode: 'mirror' | 'steal';
  filter?: CompiledFilter;
  /** The filter as the session wrote it, for messages. */
  filterText?: string;
  since: Date;
  /** A new stream to this session's local program. */
  open(info: ApOpen): ApStream;
  /** A client connection that is this session's alone (closed when the session leaves). */
  own(socket: net.Socket): void;
}

interface Port {
  listener: net.Server;
  toPort: number;
  subs: Subscriber[];
  /** An unfiltered steal that took the port with `override`, while it holds it. */
  override?: Subscriber;
}

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

export interface PortTableOptions {
  /** The agent's chain (`MIRRORD_<agent session>`). */
  chain: string;
  log?: Logger;
  /** Injected by tests, which serve connections without iptables. */
  iptables?: () => Promise<Iptables>;
}

export class PortTable {
  private readonly ports = new Map<number, Port>();
  /** Every session of the agent, subscribed or not (`agent.sessions`). */
  readonly members = new Map<string, { client: string; since: Date }>();
  private readonly sockets = new Set<net.Socket>();
  private ipt: Promise<Iptables> | undefined;
  private chainReady: Promise<void> | undefined;
  private swept: Promise<void> | undefined;

  constructor(private readonly opts: PortTableOptions) {}

  get chain(): string {
    return this.opts.chain;
  }

  private iptables(): Promise<Iptables> {
    this.ipt ??= (this.opts.iptables ?? (() => Iptables.detect(this.opts.log)))();
    return this.ipt;
  }

  /**
   * Removes the chains of sessions whose agent is gone, once per agent: at the start of every
   * session (server.ts), and before the first subscription at the latest. Never fails: an agent
   * without NET_ADMIN (some targetless set-ups) simply has nothing to sweep.
   */
  sweepStale(): Promise<void> {
    this.swept ??= (async () => {
      try {
        await sweepStaleChains(await this.iptables(), this.opts.chain, this.opts.log);
      } catch (err) {
        this.opts.log?.debug(`stale-rule sweep: ${(err as Error).message.split('\n')[0]}`);
      }
    })();
    return this.swept;
  }

  /** Stale chains of dead sessions go first, then ours is made, once. */
  private ensureChain(): Promise<void> {
    this.chainReady ??= (async () => {
      const ipt = await this.iptables();
      await this.sweepStale();
      await ipt.removeChain(this.opts.chain);
      await ipt.createChain(this.opts.chain);
    })();
    return this.chainReady;
  }

  /** Who else steals `port`, as a message names them. */
  private describe(s: Subscriber): string {
    return `session ${s.session}${s.client ? ` (${s.client})` : ''}${s.filterText ? ` with filter ${s.filterText}` : ' without a filter'}`;
  }

  async subscribe(sub: Subscriber, onConcurrent: ConcurrentSteal = 'abort'): Promise<{ backend: string }> {
    const existing = this.ports.get(sub.port);
    if (existing?.subs.some((s) => s.session === sub.session)) throw codeError('EEXIST', `port ${sub.port} is already subscribed`);
    if (existing && sub.mode === 'steal' && !sub.filter) {
      const stealer = existing.subs.find((s) => s.mode === 'steal');
      if (stealer && onConcurrent === 'abort') {
        throw codeError(
          'EBUSY',
          `port ${sub.port} is already stolen by ${this.describe(stealer)}; set feature.network.incoming.on_concurrent_steal to continue or override, or steal with an http_filter`,
        );
      }
    }
    if (existing) {
      existing.subs.push(sub);
      if (sub.mode === 'steal' && !sub.filter && onConcurrent === 'override') existing.override = sub;
      this.opts.log?.info(`port ${sub.port}: ${sub.mode} of session ${sub.session} joins ${existing.subs.length - 1} other(s)`);
      return { backend: (await this.iptables()).backend };
    }
    const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s, sub.port));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '::', () => resolve());
    });
    const toPort = (listener.address() as net.AddressInfo).port;
    const port: Port = { listener, toPort, subs: [sub], override: sub.mode === 'steal' && !sub.filter && onConcurrent === 'override' ? sub : undefined };
    this.ports.set(sub.port, port);
    try {
      await this.ensureChain();
      await (await this.iptables()).redirect(this.opts.chain, sub.port, toPort, true);
    } catch (err) {
      this.ports.delete(sub.port);
      listener.close();
      const msg = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
      throw codeError('EPERM', `cannot redirect port ${sub.port} (${msg.split('\n')[0]}); the agent needs NET_ADMIN`);
    }
    this.opts.log?.info(`port ${sub.port} ${sub.mode}${sub.filter ? ' (HTTP filter)' : ''} via ${toPort}`);
    return { backend: (await this.iptables()).backend };
  }

  /** The port's last subscriber takes its rule and listener with it; connections already accepted keep going. */
  async unsubscribe(sub: Subscriber): Promise<void> {
    const port = this.ports.get(sub.port);
    if (!port) return;
    port.subs = port.subs.filter((s) => s !== sub);
    if (port.override === sub) port.override = undefined;
    if (port.subs.length > 0) return;
    this.ports.delete(sub.port);
    await (await this.iptables()).redirect(this.opts.chain, sub.port, port.toPort, false).catch(() => undefined);
    port.listener.close();
  }

  /** Serves one connection as if the REDIRECT had brought it (tests call this directly). */
  accept(socket: net.Socket, portNumber: number): void {
    const port = this.ports.get(portNumber);
    if (!port) return void socket.destroy();
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const host = (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    const info: ApOpen = {
      port: portNumber,
      mode: 'steal',
      remoteAddress: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      remotePort: socket.remotePort ?? 0,
      localAddress: host,
      localPort: portNumber,
    };
    const mirrors = port.subs.filter((s) => s.mode === 'mirror');
    const stealers = port.subs.filter((s) => s.mode === 'steal');
    const filtered = stealers.filter((s) => s.filter);
    const fallback = stealers.find((s) => !s.filter);
    const whole = port.override ?? (filtered.length === 0 ? fallback : undefined);
    if (whole) {
      this.copies(socket, info, mirrors);
      return this.pipeTo(socket, info, whole);
    }
    if (filtered.length > 0) {
      // Mirrors of a port that filtered steals share see nothing: the HTTP parser reads the socket
      // directly, and a copy of the raw bytes could not follow it.
      serveFiltered({
        socket,
        app: { host, port: portNumber },
        route: (method, path, headers) => {
          const to = filtered.find((s) => this.matchesNow(s, method, path, headers)) ?? (fallback && port.subs.includes(fallback) ? fallback : undefined);
          return to && { key: to.session, open: () => to.open(info) };
        },
        log: this.opts.log,
      });
      return;
    }
    this.passThrough(socket, info, mirrors);
  }

  /** A session that left since the connection came is skipped: its requests go to the next in line. */
  private matchesNow(s: Subscriber, method: string, path: string, headers: string[]): boolean {
    const port = this.ports.get(s.port);
    return !!port?.subs.includes(s) && !!s.filter && matchesFilter(s.filter, method, path, headers);
  }

  private pipeTo(socket: net.Socket, info: ApOpen, to: Subscriber): void {
    const stream = to.open(info);
    to.own(socket);
    socket.pipe(stream).pipe(socket);
    socket.once('error', () => stream.destroy());
    stream.once('error', () => socket.destroy());
    socket.resume();
  }

  /** A copy of the client's bytes to each mirror session; its answers are dropped. */
  private copies(socket: net.Socket, info: ApOpen, mirrors: Subscriber[]): void {
    for (const m of mirrors) {
      let copy: ApStream | undefined = m.open({ ...info, mode: 'mirror' });
      copy.resume(); // the local program's answers are dropped
      copy.once('error', () => (copy = undefined));
      copy.once('close', () => (copy = undefined));
      socket.on('data', (chunk: Buffer) => {
        if (!copy) return;
        if (copy.writableLength > MIRROR_MAX_LAG) {
          this.opts.log?.debug(`mirror copy of ${info.remoteAddress}:${info.remotePort} for ${m.session} fell behind; dropped`);
          copy.destroy();
          copy = undefined;
          return;
        }
        copy.write(chunk);
      });
      socket.once('end', () => copy?.end());
      socket.once('close', () => copy?.end());
    }
  }

  private passThrough(socket: net.Socket, info: ApOpen, mirrors: Subscriber[]): void {
    // Connecting to the address the client used reaches the app through OUTPUT, not PREROUTING,
    // so it is not redirected again.
    const app = net.connect({ host: info.localAddress, port: info.port, allowHalfOpen: true });
    app.setNoDelay(true);
    this.copies(socket, info, mirrors);
    socket.pipe(app).pipe(socket);
    app.on('error', () => socket.destroy());
    socket.once('close', () => app.destroy());
    socket.resume();
  }

  /** The agent's sessions but `except`, with their subscriptions: what `mirrord status` shows. */
  sessions(except?: string): ApSessionInfo[] {
    const subs = [...this.ports.values()].flatMap((p) => p.subs);
    return [...this.members.entries()]
      .filter(([id]) => id !== except)
      .map(([session, m]) => ({
        session,
        client: m.client,
        since: m.since.toISOString(),
        subscriptions: subs
          .filter((s) => s.session === session)
          .map((s) => ({ port: s.port, mode: s.mode, ...(s.filterText ? { filter: s.filterText } : {}), since: s.since.toISOString() })),
      }));
  }

  /** The agent leaves: rules first (so the target answers its clients again at once), then sockets. */
  async close(): Promise<void> {
    const hadRules = this.chainReady !== undefined;
    for (const p of this.ports.values()) p.listener.close();
    this.ports.clear();
    if (hadRules) await (await this.iptables()).removeChain(this.opts.chain).catch(() => undefined);
    for (const s of this.sockets) s.destroy();
    // A sweep under way finishes before the agent exits (a session may be shorter than it).
    await this.swept;
  }

  get hasRules(): boolean {
    return this.chainReady !== undefined;
  }
}
