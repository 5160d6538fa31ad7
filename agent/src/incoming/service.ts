/**
 * Incoming traffic of one session: its subscriptions in the agent's port table (ports.ts, which
 * holds the listeners, the REDIRECT rules and the routing among sessions), and the agent-initiated
 * streams (OPEN, even ids) that carry each connection or request routed to this session's local
 * program. A session sees only its own streams; leaving takes its subscriptions and the
 * connections that were its alone, never another session's.
 */
import type net from 'node:net';
import {
  ApKind,
  decodeClose,
  decodeCredit,
  encodeOpen,
  type ApFrame,
  type ApHttpFilter,
  type ApMethods,
  type ApOpen,
} from '../../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../../common/link/stream.js';
import { AgentLinkError } from '../../../common/link/errors.js';
import type { Logger } from '../../../common/log.js';
import { compileFilter, type CompiledFilter } from './http-filter.js';
import { chainName, type Iptables } from './iptables.js';
import { PortTable, type Subscriber } from './ports.js';
import { SessionHandovers, canHandOver } from './handover.js';
import { metrics } from '../metrics.js';

type SubscribeParams = ApMethods['incoming.subscribe']['params'];

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

export interface IncomingOptions {
  send: FrameSink;
  session: string;
  log?: Logger;
  /** The agent's port table, shared by its sessions; without one the session has its own (chain named for it). */
  ports?: PortTable;
  /** Injected by tests, which serve connections without iptables (own port table only). */
  iptables?: () => Promise<Iptables>;
}

export class IncomingService {
  private readonly subs = new Map<number, Subscriber>();
  private readonly streams = new Map<number, ApStream>();
  private readonly owned = new Set<net.Socket>();
  private nextStream = 2;
  readonly ports: PortTable;
  private readonly ownTable: boolean;
  private clientName = '';
  /** Connections handed to the program itself (handover.ts), not settled yet. */
  readonly handovers = new SessionHandovers();

  constructor(private readonly opts: IncomingOptions) {
    this.ownTable = !opts.ports;
    this.ports = opts.ports ?? new PortTable({ chain: chainName(opts.session), log: opts.log, iptables: opts.iptables });
  }

  get chain(): string {
    return this.ports.chain;
  }

  /** The client's name from its HELLO: the session is one of the agent's from then on. */
  set client(name: string) {
    this.clientName = name;
    this.ports.members.set(this.opts.session, { client: name, since: new Date() });
  }

  get client(): string {
    return this.clientName;
  }

  get session(): string {
    return this.opts.session;
  }

  sweepStale(): Promise<void> {
    return this.ports.sweepStale();
  }

  async subscribe(p: SubscribeParams): Promise<ApMethods['incoming.subscribe']['result']> {
    if (this.subs.has(p.port)) throw codeError('EEXIST', `port ${p.port} is already subscribed`);
    let filter: CompiledFilter | undefined;
    try {
      filter = p.httpFilter ? compileFilter(p.httpFilter) : undefined;
    } catch (err) {
      throw codeError('EINVAL', (err as Error).message);
    }
    const filterText = filter ? describeFilter(p.httpFilter!) : undefined;
    const sub: Subscriber = {
      session: this.opts.session,
      client: this.client,
      port: p.port,
      mode: p.mode,
      filter,
      filterText,
      since: new Date(),
      open: (info) => this.open({ ...info, mode: info.mode === 'mirror' ? 'mirror' : p.mode }),
      own: (socket) => {
        this.owned.add(socket);
        socket.once('close', () => this.owned.delete(socket));
      },
      handOver:
        p.handover && p.mode === 'steal' && canHandOver()
          ? (socket, info, fallback) => this.handovers.offer(socket, info, (i) => (sub.own(socket), this.open(i)), fallback)
          : undefined,
    };
    const { backend } = await this.ports.subscribe(sub, p.onConcurrentSteal);
    this.subs.set(p.port, sub);
    metrics.subscriptions.inc({ mode: p.mode });
    return { port: p.port, backend };
  }

  async unsubscribe(port: number): Promise<void> {
    const sub = this.subs.get(port);
    if (!sub) throw codeError('ENOENT', `port ${port} is not subscribed`);
    this.subs.delete(port);
    metrics.subscriptions.dec({ mode: sub.mode });
    await this.ports.unsubscribe(sub);
  }

  /** Serves one connection as if the REDIRECT had brought it (tests call this directly). */
  accept(socket: net.Socket, port: number): void {
    this.ports.accept(socket, port);
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

  /** A DATA frame's payload, in the pieces the link read it in. */
  onData(channel: number, pieces: Buffer[], length: number): void {
    this.streams.get(channel)?.onData(pieces, length);
  }

  onFrame(f: ApFrame): void {
    const s = this.streams.get(f.channel);
    if (!s) return;
    if (f.kind === ApKind.DATA) s.onData(f.payload);
    else if (f.kind === ApKind.EOF) s.onEof();
    else if (f.kind === ApKind.CREDIT) s.onCredit(decodeCredit(f));
    else if (f.kind === ApKind.CLOSE) s.onClose(decodeClose(f).error);
  }

  /**
   * Session end: its subscriptions go first (with a table of its own, the whole chain: the target
   * answers its clients again at once), then its streams and the connections that were its alone.
   */
  async closeAll(err: Error): Promise<void> {
    const mine = [...this.subs.values()];
    this.subs.clear();
    for (const sub of mine) metrics.subscriptions.dec({ mode: sub.mode });
    this.ports.members.delete(this.opts.session);
    if (this.ownTable) await this.ports.close();
    else for (const sub of mine) await this.ports.unsubscribe(sub).catch(() => undefined);
    for (const s of [...this.streams.values()]) s.linkLost(new AgentLinkError('ELINK', err.message));
    this.streams.clear();
    for (const s of this.owned) s.destroy();
  }

  get hasRules(): boolean {
    return this.ports.hasRules;
  }
}

/** The filter as `mirrord status` and messages show it: "header ^x: a$, any of (path ^/a, method GET)". */
export function describeFilter(f: ApHttpFilter): string {
  const parts = [
    f.header && `header ${f.header}`,
    f.path && `path ${f.path}`,
    f.method && `method ${f.method}`,
    f.body && `body ${f.body.query} ~ ${f.body.matches}`,
    f.allOf && `all of (${f.allOf.map(describeFilter).join('; ')})`,
    f.anyOf && `any of (${f.anyOf.map(describeFilter).join('; ')})`,
  ];
  return parts.filter(Boolean).join(', ');
}
