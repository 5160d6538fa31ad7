/**
 * The agent's ports: one listener and one REDIRECT per target port, whatever number of sessions
 * subscribe it, all in the agent's own chain. Each accepted connection is routed among the port's
 * subscribers:
 * - an unfiltered steal holding the port (the only stealer, or an `override`): the whole connection;
 * - filtered steals: each HTTP request to the first session whose filter matches (per request on
 *   HTTP/1.1 keep-alive, per stream on h2c), the rest to an unfiltered `continue` steal if one
 *   shares the port, else to the target's own application;
 * Mirrors never redirect anything: while a port has mirroring sessions its packets are captured
 * (sniff.ts), each connection's bytes rebuilt (tcp-reassembly.ts) and copied to them
 * (mirror-copy.ts), whether the connection goes to the target's app or is stolen. A port with
 * only mirrors has no rule and no listener: the target's clients talk to it directly.
 * One PortTable per agent process; each session's IncomingService (service.ts) subscribes in it.
 */
import net from 'node:net';
import type { ApOpen, ApSessionInfo } from '../../../common/protocol/agent/index.js';
import type { ApStream } from '../../../common/link/stream.js';
import type { Logger } from '../../../common/log.js';
import { jqExpressions, matchesRequest, needsBody, serveFiltered, type CompiledFilter, type RequestView } from './http-filter.js';
import { Iptables, sweepStaleChains } from './iptables.js';
import { mirrorCopies } from './mirror-copy.js';
import { openSniffer, type OpenCapture, type PacketSource } from './sniff.js';
import { Reassembler } from './tcp-reassembly.js';
import { countConnection } from '../metrics.js';
import { disabledHint, settings } from '../settings.js';

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
  /** The fast path (handover.ts): hands a whole connection to the program; false, or `fallback` later: the stream. */
  handOver?(socket: net.Socket, info: ApOpen, fallback: () => void): boolean;
}

interface Port {
  number: number;
  subs: Subscriber[];
  /** An unfiltered steal that took the port with `override`, while it holds it. */
  override?: Subscriber;
  /** While the port has stealers: the REDIRECT rule and the listener it leads to. */
  redirect?: { listener: net.Server; toPort: number };
  /** While the port has mirrors: its packet capture. */
  capture?: { source: PacketSource; reasm: Reassembler; timer: NodeJS.Timeout };
  /** Rule and capture changes of one port, one after the other. */
  syncing: Promise<void>;
}

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

export interface PortTableOptions {
  /** The agent's chain (`MIRRORD_<agent session>`). */
  chain: string;
  log?: Logger;
  /** Injected by tests, which serve connections without iptables. */
  iptables?: () => Promise<Iptables>;
  /** Injected by tests, which feed mirrors segments without a raw socket. */
  capture?: OpenCapture;
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
    const takes = sub.mode === 'steal' && !sub.filter && onConcurrent === 'override';
    if (existing) {
      existing.subs.push(sub);
      if (takes) existing.override = sub;
      this.opts.log?.info(`port ${sub.port}: ${sub.mode} of session ${sub.session} joins ${existing.subs.length - 1} other(s)`);
    }
    const port: Port = existing ?? { number: sub.port, subs: [sub], override: takes ? sub : undefined, syncing: Promise.resolve() };
    this.ports.set(sub.port, port);
    try {
      await this.sync(port);
    } catch (err) {
      port.subs = port.subs.filter((s) => s !== sub);
      if (port.override === sub) port.override = undefined;
      await this.sync(port).catch(() => undefined);
      throw err;
    }
    if (!existing) this.opts.log?.info(`port ${sub.port} ${sub.mode}${sub.filter ? ' (HTTP filter)' : ''}`);
    return { backend: sub.mode === 'mirror' ? 'capture' : (await this.iptables()).backend };
  }

  /** The port's last stealer takes its rule and listener with it, its last mirror the capture; connections already accepted keep going. */
  async unsubscribe(sub: Subscriber): Promise<void> {
    const port = this.ports.get(sub.port);
    if (!port) return;
    port.subs = port.subs.filter((s) => s !== sub);
    if (port.override === sub) port.override = undefined;
    await this.sync(port).catch((err: Error) => this.opts.log?.info(`port ${port.number}: ${err.message}`));
  }

  /** Brings the port's rule and capture in line with its subscribers. */
  private sync(port: Port): Promise<void> {
    const next = port.syncing.catch(() => undefined).then(() => this.syncNow(port));
    port.syncing = next;
    return next;
  }

  private async syncNow(port: Port): Promise<void> {
    const stealing = port.subs.some((s) => s.mode === 'steal');
    const mirroring = port.subs.some((s) => s.mode === 'mirror');
    if (port.subs.length === 0 && this.ports.get(port.number) === port) this.ports.delete(port.number);
    if (stealing && !port.redirect) await this.startRedirect(port);
    if (!stealing && port.redirect) {
      const { listener, toPort } = port.redirect;
      port.redirect = undefined;
      await (await this.iptables()).redirect(this.opts.chain, port.number, toPort, false).catch(() => undefined);
      listener.close();
    }
    if (mirroring && !port.capture) await this.startCapture(port);
    if (!mirroring && port.capture) this.stopCapture(port, 'no session mirrors the port any more');
  }

  private async startRedirect(port: Port): Promise<void> {
    const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s, port.number));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '::', () => resolve());
    });
    const toPort = (listener.address() as net.AddressInfo).port;
    try {
      await this.ensureChain();
      await (await this.iptables()).redirect(this.opts.chain, port.number, toPort, true);
    } catch (err) {
      listener.close();
      const msg = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
      const hint = disabledHint('NET_ADMIN');
      throw codeError('EPERM', `cannot redirect port ${port.number} (${msg.split('\n')[0]}); ${hint ?? 'the agent needs NET_ADMIN'}`);
    }
    port.redirect = { listener, toPort };
    this.opts.log?.debug(`port ${port.number} redirected to ${toPort}`);
    // agent.flush_connections: connections established before the rule keep their path to the
    // target; forgetting their conntrack entries makes their next packet meet the rule, which resets
    // them, and the client's reconnection is stolen.
    if (settings().flushConnections && !this.opts.iptables) {
      const flushed = await (await this.iptables()).flushConnections(port.number).catch((err: Error) => {
        this.opts.log?.warn(`agent.flush_connections: cannot flush the connections to port ${port.number}: ${err.message.split('\n')[0]}`);
        return 0;
      });
      this.opts.log?.info(`port ${port.number}: ${flushed} established connection(s) flushed`);
    }
  }

  /** Each connection the capture sees from its SYN on is copied to the port's mirrors of that moment. */
  private async startCapture(port: Port): Promise<void> {
    const log = this.opts.log;
    const reasm = new Reassembler({
      open: (key) =>
        mirrorCopies(
          port.subs
            .filter((s) => s.mode === 'mirror')
            .map((m) => ({ session: m.session, filter: m.filter, open: () => m.open({ port: port.number, mode: 'mirror', ...key }) })),
          `${key.remoteAddress}:${key.remotePort}`,
          log,
        ),
    });
    const open = this.opts.capture ?? openSniffer(log);
    const source: PacketSource = open(
      port.number,
      (seg) => reasm.push(seg),
      (reason) => {
        reasm.close(reason);
        // The helper died under us (killed, out of memory): a new capture, a second later, for
        // as long as someone mirrors the port. Copies of connections under way are lost.
        if (port.capture?.source !== source) return;
        this.stopCapture(port, reason);
        setTimeout(() => void this.sync(port).catch((err: Error) => log?.info(`port ${port.number}: ${err.message}`)), 1000).unref();
      },
    );
    try {
      await source.ready;
    } catch (err) {
      source.close();
      const why = (err as Error).message;
      throw codeError('EPERM', `cannot capture port ${port.number} for mirroring: ${why}${/NET_RAW/.test(why) ? '' : ' (the agent needs NET_RAW)'}`);
    }
    const timer = setInterval(() => reasm.sweep(), 30_000);
    timer.unref();
    port.capture = { source, reasm, timer };
    log?.debug(`port ${port.number} captured for mirroring`);
  }

  private stopCapture(port: Port, reason: string): void {
    const c = port.capture;
    if (!c) return;
    port.capture = undefined;
    clearInterval(c.timer);
    c.source.close();
    c.reasm.close(reason);
  }

  /** Serves one connection as if the REDIRECT had brought it (tests call this directly). */
  accept(socket: net.Socket, portNumber: number): void {
    const port = this.ports.get(portNumber);
    if (!port) return void socket.destroy();
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    countConnection('incoming', socket);
    const host = (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    const info: ApOpen = {
      port: portNumber,
      mode: 'steal',
      remoteAddress: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      remotePort: socket.remotePort ?? 0,
      localAddress: host,
      localPort: portNumber,
    };
    const stealers = port.subs.filter((s) => s.mode === 'steal');
    const filtered = stealers.filter((s) => s.filter);
    const fallback = stealers.find((s) => !s.filter);
    const whole = port.override ?? (filtered.length === 0 ? fallback : undefined);
    if (whole) return this.pipeTo(socket, info, whole);
    if (filtered.length > 0) {
      serveFiltered({
        socket,
        app: { host, port: portNumber },
        needsBody: filtered.some((s) => needsBody(s.filter!)),
        jqExprs: jqExpressions(filtered.map((s) => s.filter!)),
        route: (r) => {
          const to = filtered.find((s) => this.matchesNow(s, r)) ?? (fallback && port.subs.includes(fallback) ? fallback : undefined);
          return to && { key: to.session, open: () => to.open(info) };
        },
        log: this.opts.log,
      });
      return;
    }
    // The port's stealers left while this connection came: the application gets it.
    this.passThrough(socket, info);
  }

  /** A session that left since the connection came is skipped: its requests go to the next in line. */
  private matchesNow(s: Subscriber, r: RequestView): boolean {
    const port = this.ports.get(s.port);
    return !!port?.subs.includes(s) && !!s.filter && matchesRequest(s.filter, r);
  }

  private pipeTo(socket: net.Socket, info: ApOpen, to: Subscriber): void {
    if (to.handOver?.(socket, info, () => this.pipeTo(socket, info, { ...to, handOver: undefined }))) return;
    const stream = to.open(info);
    to.own(socket);
    socket.pipe(stream).pipe(socket);
    socket.once('error', () => stream.destroy());
    stream.once('error', () => socket.destroy());
    socket.resume();
  }

  private passThrough(socket: net.Socket, info: ApOpen): void {
    // Connecting to the address the client used reaches the app through OUTPUT, not PREROUTING,
    // so it is not redirected again.
    const app = net.connect({ host: info.localAddress, port: info.port, allowHalfOpen: true });
    app.setNoDelay(true);
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
    for (const p of this.ports.values()) {
      p.redirect?.listener.close();
      this.stopCapture(p, 'the agent leaves');
    }
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
