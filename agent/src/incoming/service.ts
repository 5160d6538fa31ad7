/**
 * Incoming traffic: per subscribed port, a listener of the agent and an iptables REDIRECT from the
 * port to it, in the target's namespace. Each accepted connection becomes an agent-initiated stream
 * (OPEN, even id) to the local program:
 * - mirror: the connection is passed through to the real application, which keeps answering; a
 *   copy of the client's bytes goes to the local program, whose answers are dropped. A copy that
 *   falls behind is cut off rather than ever slowing the real traffic.
 * - steal: the connection goes to the local program, or, with an HTTP filter, each request goes to
 *   whichever side the filter picks.
 */
import net from 'node:net';
import { ApKind, decodeClose, decodeCredit, encodeOpen, type ApFrame, type ApMethods, type ApOpen } from '../../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../../common/link/stream.js';
import { AgentLinkError } from '../../../common/link/errors.js';
import type { Logger } from '../../../common/log.js';
import { compileFilter, serveFiltered, type CompiledFilter } from './http-filter.js';
import { Iptables, chainName, sweepStaleChains } from './iptables.js';

type SubscribeParams = ApMethods['incoming.subscribe']['params'];

/** A mirror copy may lag this far behind the real traffic before it is dropped. */
const MIRROR_MAX_LAG = 4 * 1024 * 1024;

interface Subscription {
  port: number;
  mode: 'mirror' | 'steal';
  filter?: CompiledFilter;
  listener: net.Server;
  toPort: number;
}

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

export interface IncomingOptions {
  send: FrameSink;
  session: string;
  log?: Logger;
  /** Injected by tests, which serve connections without iptables. */
  iptables?: () => Promise<Iptables>;
}

export class IncomingService {
  private readonly subs = new Map<number, Subscription>();
  private readonly streams = new Map<number, ApStream>();
  private readonly sockets = new Set<net.Socket>();
  private nextStream = 2;
  private ipt: Promise<Iptables> | undefined;
  private chainReady: Promise<void> | undefined;
  private swept: Promise<void> | undefined;
  readonly chain: string;

  constructor(private readonly opts: IncomingOptions) {
    this.chain = chainName(opts.session);
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
        await sweepStaleChains(await this.iptables(), this.chain, this.opts.log);
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
      await ipt.removeChain(this.chain);
      await ipt.createChain(this.chain);
    })();
    return this.chainReady;
  }

  async subscribe(p: SubscribeParams): Promise<ApMethods['incoming.subscribe']['result']> {
    if (this.subs.has(p.port)) throw codeError('EEXIST', `port ${p.port} is already subscribed`);
    const filter = p.httpFilter && p.mode === 'steal' ? compileFilter(p.httpFilter) : undefined;
    const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s, p.port));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '::', () => resolve());
    });
    const toPort = (listener.address() as net.AddressInfo).port;
    const sub: Subscription = { port: p.port, mode: p.mode, filter, listener, toPort };
    this.subs.set(p.port, sub);
    try {
      await this.ensureChain();
      await (await this.iptables()).redirect(this.chain, p.port, toPort, true);
    } catch (err) {
      this.subs.delete(p.port);
      listener.close();
      const msg = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
      throw codeError('EPERM', `cannot redirect port ${p.port} (${msg.split('\n')[0]}); the agent needs NET_ADMIN`);
    }
    this.opts.log?.info(`port ${p.port} ${p.mode}${filter ? ' (HTTP filter)' : ''} via ${toPort}`);
    return { port: p.port, backend: (await this.iptables()).backend };
  }

  async unsubscribe(port: number): Promise<void> {
    const sub = this.subs.get(port);
    if (!sub) throw codeError('ENOENT', `port ${port} is not subscribed`);
    this.subs.delete(port);
    await (await this.iptables()).redirect(this.chain, port, sub.toPort, false).catch(() => undefined);
    // Connections already accepted keep going; no new ones arrive.
    sub.listener.close();
  }

  /** Serves one connection as if the REDIRECT had brought it (tests call this directly). */
  accept(socket: net.Socket, port: number): void {
    const sub = this.subs.get(port);
    if (!sub) return void socket.destroy();
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const host = (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    const info: ApOpen = {
      port,
      mode: sub.mode,
      remoteAddress: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      remotePort: socket.remotePort ?? 0,
      localAddress: host,
      localPort: port,
    };
    if (sub.mode === 'mirror') return this.mirror(socket, info);
    if (sub.filter) {
      serveFiltered({ socket, filter: sub.filter, app: { host, port }, toLocal: () => this.open(info), log: this.opts.log });
      return;
    }
    const stream = this.open(info);
    socket.pipe(stream).pipe(socket);
    socket.once('error', () => stream.destroy());
    stream.once('error', () => socket.destroy());
    socket.resume();
  }

  private mirror(socket: net.Socket, info: ApOpen): void {
    // Connecting to the address the client used reaches the app through OUTPUT, not PREROUTING,
    // so it is not redirected again.
    const app = net.connect({ host: info.localAddress, port: info.port, allowHalfOpen: true });
    app.setNoDelay(true);
    let copy: ApStream | undefined = this.open({ ...info, mode: 'mirror' });
    copy.resume(); // the local program's answers are dropped
    copy.once('error', () => (copy = undefined));
    copy.once('close', () => (copy = undefined));
    socket.on('data', (chunk: Buffer) => {
      if (!copy) return;
      if (copy.writableLength > MIRROR_MAX_LAG) {
        this.opts.log?.debug(`mirror copy of ${info.remoteAddress}:${info.remotePort} fell behind; dropped`);
        copy.destroy();
        copy = undefined;
        return;
      }
      copy.write(chunk);
    });
    socket.once('end', () => copy?.end());
    socket.pipe(app).pipe(socket);
    app.on('error', () => socket.destroy());
    socket.once('close', () => {
      app.destroy();
      copy?.end();
    });
    socket.resume();
  }

  private open(info: ApOpen): ApStream {
    const id = this.nextStream;
    this.nextStream = (this.nextStream + 2) >>> 0 || 2;
    const stream = new ApStream(id, this.opts.send, (s) => {
      if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    });
    stream.on('error', () => undefined);
    this.streams.set(id, stream);
    this.opts.send(encodeOpen(id, info));
    return stream;
  }

  onFrame(f: ApFrame): void {
    const s = this.streams.get(f.channel);
    if (!s) return;
    if (f.kind === ApKind.DATA) s.onData(f.payload);
    else if (f.kind === ApKind.EOF) s.onEof();
    else if (f.kind === ApKind.CREDIT) s.onCredit(decodeCredit(f));
    else if (f.kind === ApKind.CLOSE) s.onClose(decodeClose(f).error);
  }

  /** Session end: rules first (so the target answers its clients again at once), then sockets. */
  async closeAll(err: Error): Promise<void> {
    const hadRules = this.chainReady !== undefined;
    for (const sub of this.subs.values()) sub.listener.close();
    this.subs.clear();
    if (hadRules) await (await this.iptables()).removeChain(this.chain).catch(() => undefined);
    for (const s of [...this.streams.values()]) s.linkLost(new AgentLinkError('ELINK', err.message));
    this.streams.clear();
    for (const s of this.sockets) s.destroy();
    // A sweep under way finishes before the agent exits (a session may be shorter than it).
    await this.swept;
  }

  /** Synchronous last resort for process exit paths where nothing async runs any more. */
  get hasRules(): boolean {
    return this.chainReady !== undefined;
  }
}
