import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ResolvedFeatures } from '../config/schema.js';
import { recordFastPath } from '../../common/data-path-record.js';
import type { Logger } from '../../common/log.js';
import type { ApHttpFilter, ApOpen } from '../../common/protocol/agent/index.js';
import type { InnerHttpFilter } from '../config/feature-schema.js';
import type { LpAddr } from '../../common/protocol/layer/index.js';
import type { IncomingAgentPort } from './agent-port.js';

interface Listening {
  owner: unknown;
  remotePort: number;
  /** Where the program's listener really is (the layer may have bound another port than asked). */
  dial: { host: string; port: number };
}

/** The remote client of a connection the intproxy dialled into the program's listener. */
interface Dialled {
  remote: LpAddr;
  socket: net.Socket;
  /** The fast path: a placeholder for a connection waiting in the agent's socket helper. */
  handover?: Handover;
}

/**
 * waiting: no layer asked yet; offered: a layer was told to take it; stream: it goes over the
 * stream (the placeholder is the program's connection, as without the fast path); taken.
 */
interface Handover {
  id: string;
  state: 'waiting' | 'offered' | 'stream';
  timer?: NodeJS.Timeout;
  go(): void;
}

const DIAL_RACE_MS = 500;
/** A placeholder no layer asks about for this long (a program not under the layer): streamed. */
const HANDOVER_WAIT_MS = 2_000;

/**
 * Incoming traffic on the intproxy side: LISTEN from a layer becomes a subscription at the agent
 * (after `ports`, `ignore_ports` and `port_mapping`), each OPEN from the agent becomes a
 * connection dialled into the program's real listener, and the layer's ACCEPT learns which remote
 * client that connection stands for.
 */
export class IncomingManager {
  private readonly byRemotePort = new Map<number, Listening>();
  private readonly dialled = new Map<number, Dialled>();
  private readonly waiters = new Map<number, Array<(d: Dialled | undefined) => void>>();
  private dialsInFlight = 0;
  private prepared: Promise<void> | undefined;

  constructor(
    private readonly agent: IncomingAgentPort,
    private readonly features: ResolvedFeatures,
    private readonly log: Logger,
    private readonly beforeFirst?: () => Promise<void>,
    /** The socket helper passed the session's test: unfiltered steals hand connections over. */
    private readonly fdPassing = false,
  ) {
    agent.onIncoming((info, stream) => this.onOpen(info, stream));
  }

  /** The remote port a local listening port stands for, or why it is not subscribed. */
  remotePortFor(localPort: number): number | string {
    const inc = this.features.incoming;
    if (inc.mode === 'off') return 'feature.network.incoming.mode is off';
    if (inc.ignore_ports.includes(localPort)) return 'in ignore_ports';
    const mapped = inc.port_mapping.find(([l]) => l === localPort)?.[1] ?? localPort;
    if (inc.ports && !inc.ports.includes(mapped)) return 'not in ports';
    return mapped;
  }

  private filterFor(remotePort: number): ApHttpFilter | undefined {
    const f = this.features.incoming.http_filter;
    // Steal and mirror alike: a mirroring session gets a copy of the matching requests only.
    if (!f || this.features.incoming.mode === 'off') return undefined;
    if (f.ports && !f.ports.includes(remotePort)) return undefined;
    const filter: ApHttpFilter = {};
    if (f.header_filter) filter.header = f.header_filter;
    if (f.path_filter) filter.path = f.path_filter;
    if (f.method_filter) filter.method = f.method_filter;
    if (f.body_filter) filter.body = { query: f.body_filter.query, matches: f.body_filter.matches };
    if (f.header_filter_jq) filter.headerJq = f.header_filter_jq;
    if (f.all_of?.length) filter.allOf = f.all_of.map(innerFilter);
    if (f.any_of?.length) filter.anyOf = f.any_of.map(innerFilter);
    return Object.keys(filter).length ? filter : undefined;
  }

  /** A layer's listen(): returns an LP status (0 subscribed, 1 not subscribed, <0 -errno). */
  async listen(owner: unknown, requested: LpAddr, bound: LpAddr): Promise<number> {
    const remote =
      requested.port === 0
        ? 'an ephemeral port was asked for'
        : this.features.incoming.ignore_localhost && isLoopback(requested.address)
          ? `bound to ${requested.address} and ignore_localhost is on`
          : this.remotePortFor(requested.port);
    if (typeof remote === 'string') {
      this.log.debug(`listen on ${requested.port} stays local (${remote})`);
      return 1;
    }
    if (this.byRemotePort.has(remote)) {
      this.log.warn(`port ${remote} is already subscribed by another listener of this session; the new one stays local`);
      return 1;
    }
    this.prepared ??= this.beforeFirst?.() ?? Promise.resolve();
    await this.prepared;
    const dial = { host: dialHost(bound), port: bound.port };
    const entry: Listening = { owner, remotePort: remote, dial };
    this.byRemotePort.set(remote, entry);
    const mode = this.features.incoming.mode === 'steal' ? 'steal' : 'mirror';
    const httpFilter = this.filterFor(remote);
    const handover = this.fdPassing && mode === 'steal' && !httpFilter;
    try {
      const onConcurrentSteal = this.features.incoming.on_concurrent_steal;
      await this.agent.request('incoming.subscribe', {
        port: remote,
        mode,
        ...(httpFilter ? { httpFilter } : {}),
        onConcurrentSteal,
        ...(handover ? { handover } : {}),
      });
    } catch (err) {
      this.byRemotePort.delete(remote);
      process.stderr.write(`mirrord: cannot ${mode} port ${remote} of the target: ${(err as Error).message}\n`);
      return 1;
    }
    this.log.info(
      `${mode === 'steal' ? 'stealing' : 'mirroring'}${httpFilter ? ' (HTTP filter)' : ''} port ${remote} -> local ${dial.host}:${dial.port}` +
        ` (incoming data path: ${handover ? 'fast, connections handed to the program' : 'stream'})`,
    );
    return 0;
  }

  async unlisten(owner: unknown, requestedPort: number): Promise<void> {
    const remote = this.remotePortFor(requestedPort);
    if (typeof remote === 'string') return;
    const entry = this.byRemotePort.get(remote);
    if (!entry || entry.owner !== owner) return;
    this.byRemotePort.delete(remote);
    await this.agent.request('incoming.unsubscribe', { port: remote }).catch((err: Error) => this.log.debug(`unsubscribe ${remote}: ${err.message}`));
  }

  /** Every listener of a process that went away. */
  async dropOwner(owner: unknown): Promise<void> {
    const mine = [...this.byRemotePort.values()].filter((l) => l.owner === owner);
    for (const l of mine) {
      this.byRemotePort.delete(l.remotePort);
      await this.agent.request('incoming.unsubscribe', { port: l.remotePort }).catch(() => undefined);
    }
  }

  /**
   * The remote client behind an accepted connection whose peer (as the program sees it) is our
   * dialling socket at `localPort`; undefined for a genuinely local client.
   */
  async remoteOf(localPort: number): Promise<LpAddr | undefined> {
    const d = await this.dialledAt(localPort);
    // A layer that asks plainly uses the placeholder as its connection: the stream carries it.
    if (d?.handover && d.handover.state !== 'stream') d.handover.go();
    return d?.remote;
  }

  /**
   * ACCEPT_TAKE: as remoteOf, and for a placeholder of a connection waiting in the socket helper,
   * its id: the layer takes the connection itself (or asks plainly afterwards, if it cannot).
   */
  async takeOf(localPort: number): Promise<{ remote: LpAddr; take?: string } | undefined> {
    const d = await this.dialledAt(localPort);
    if (!d) return undefined;
    const h = d.handover;
    if (h?.state === 'waiting') {
      h.state = 'offered';
      clearTimeout(h.timer);
      recordFastPath();
      return { remote: d.remote, take: h.id };
    }
    return { remote: d.remote };
  }

  private async dialledAt(localPort: number): Promise<Dialled | undefined> {
    const now = this.dialled.get(localPort);
    if (now || this.dialsInFlight === 0) return now;
    // The program may accept before our connect callback ran: wait for it, briefly.
    return new Promise((resolve) => {
      const list = this.waiters.get(localPort) ?? [];
      const timer = setTimeout(() => resolve(this.dialled.get(localPort)), DIAL_RACE_MS);
      list.push((d) => {
        clearTimeout(timer);
        resolve(d);
      });
      this.waiters.set(localPort, list);
    });
  }

  private onOpen(info: ApOpen, stream: Duplex): void {
    const entry = this.byRemotePort.get(info.port);
    if (!entry) {
      stream.destroy();
      return;
    }
    this.dialsInFlight++;
    const local = net.connect({ host: entry.dial.host, port: entry.dial.port, allowHalfOpen: true });
    local.setNoDelay(true);
    const remote: LpAddr = { family: net.isIPv6(info.remoteAddress) ? 6 : 4, address: info.remoteAddress || '0.0.0.0', port: info.remotePort };
    const handover = info.handover ? this.handover(info, stream, local) : undefined;
    local.once('connect', () => {
      this.dialsInFlight--;
      const port = local.localPort ?? 0;
      const d: Dialled = { remote, socket: local, handover };
      if (handover) {
        handover.timer = setTimeout(() => handover.state === 'waiting' && handover.go(), HANDOVER_WAIT_MS);
        handover.timer.unref();
      }
      this.dialled.set(port, d);
      for (const w of this.waiters.get(port) ?? []) w(d);
      this.waiters.delete(port);
      local.once('close', () => this.dialled.get(port) === d && this.dialled.delete(port));
    });
    local.once('error', (err) => {
      this.log.debug(`incoming ${info.remoteAddress}:${info.remotePort} -> local ${entry.dial.port}: ${err.message}`);
      stream.destroy();
    });
    local.once('close', () => stream.destroy());
    stream.once('error', () => local.destroy());
    if (handover) {
      // Nothing flows until the layer took the connection (the agent closes the stream) or it goes
      // over the stream after all (go()).
      stream.once('close', () => {
        clearTimeout(handover.timer);
        local.destroy();
      });
      this.log.debug(`steal connection from ${info.remoteAddress}:${info.remotePort} on port ${info.port}: waiting for the program to take it`);
      return;
    }
    if (info.mode === 'mirror') {
      // The copy's answers are dropped: the real application has answered already.
      stream.pipe(local);
      local.resume();
    } else {
      stream.pipe(local).pipe(stream);
    }
    this.log.debug(`${info.mode} connection from ${info.remoteAddress}:${info.remotePort} on port ${info.port}`);
  }

  /** The fast path's state of one connection; go() streams it after all. */
  private handover(info: ApOpen, stream: Duplex, local: net.Socket): Handover {
    const streamId = (stream as { id?: number }).id ?? 0;
    const h: Handover = {
      id: info.handover!,
      state: 'waiting',
      go: () => {
        if (h.state === 'stream') return;
        h.state = 'stream';
        clearTimeout(h.timer);
        this.log.debug(`connection ${info.remoteAddress}:${info.remotePort} on port ${info.port}: not taken by the program, streamed`);
        stream.pipe(local).pipe(stream);
        this.agent.request('incoming.stream', { stream: streamId }).catch((err: Error) => {
          this.log.debug(`incoming.stream ${streamId}: ${err.message}`);
          local.destroy();
        });
      },
    };
    return h;
  }

  close(): void {
    for (const d of this.dialled.values()) d.socket.destroy();
    this.dialled.clear();
  }
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped form: what the program asked to listen on, as the layer reports it. */
export function isLoopback(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (net.isIPv4(v4)) return v4.startsWith('127.');
  return address === '::1' || address === '0:0:0:0:0:0:0:1';
}

function dialHost(bound: LpAddr): string {
  // A wildcard IPv6 listener is dual-stack unless V6ONLY, and containers often have no IPv6 at
  // all: IPv4 loopback is the address that always works.
  if (bound.family === 6) return bound.address === '::' || bound.address === '' ? '127.0.0.1' : bound.address;
  return bound.address === '0.0.0.0' || bound.address === '' ? '127.0.0.1' : bound.address;
}

/** A config all_of / any_of item as the agent takes it. */
function innerFilter(i: InnerHttpFilter): ApHttpFilter {
  if ('header' in i) return { header: i.header };
  if ('path' in i) return { path: i.path };
  if ('method' in i) return { method: i.method };
  if ('body' in i) return { body: { query: i.query, matches: i.matches } };
  if ('query' in i) return { headerJq: i.query };
  if ('all_of' in i) return { allOf: i.all_of.map(innerFilter) };
  return { anyOf: i.any_of.map(innerFilter) };
}
