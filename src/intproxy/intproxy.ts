/**
 * The intproxy, one per session: accepts the layer connection of every process of the program,
 * answers its requests through one agent link, and owns the local sockets of the data path
 * (payload never passes through the layer). Composed of one part per job:
 *   layer-server.ts  the layers' connections, LP framing, dispatch
 *   outgoing.ts      connect(): filters, one-shot listeners, UDP relays, splice
 *   dns.ts           getaddrinfo() through the agent, the DNS filter, the names-by-IP cache
 *   files.ts         remote files (fs rules, read-ahead, handles per process)
 *   incoming.ts      listen()/accept(): subscriptions at the agent, dialling the program
 * and what it needs of the agent link is agent-port.ts.
 */
import type { Logger } from '../../common/log.js';
import type { ResolvedFeatures } from '../config/schema.js';
import type { AgentPort } from './agent-port.js';
import { DnsResolver, NameCache } from './dns.js';
import { FileProxy } from './files.js';
import { IncomingManager } from './incoming.js';
import { LayerServer, ProgramEnv, type LayerProcess } from './layer-server.js';
import { Outgoing } from './outgoing.js';

export type { AgentCapabilities, AgentPort } from './agent-port.js';
export { splice } from './outgoing.js';

export interface IntproxyOptions {
  agent: AgentPort;
  features: ResolvedFeatures;
  log: Logger;
  /** How long a redirected socket has to dial its one-shot local listener. */
  acceptTimeoutMs?: number;
  /** Runs before the first port is subscribed (the platform's guard for the agent's rules). */
  beforeIncoming?: () => Promise<void>;
  /**
   * The intproxy shares a namespace with the program alone (the sidecar of a local container): a
   * loopback port something listens on there is the program's own, and stays local.
   */
  ownNamespace?: boolean;
  /** OutgoingOptions.unixListenDir: the program sees this directory at the same path (the sidecar's volume). */
  unixListenDir?: string;
  /** The socket helper passed the session's test: remote connects take sockets (docs/fast-path.md). */
  fdPassing?: boolean;
  /** internal_proxy's timeouts and periodic log (the config's keys, in seconds). */
  proxy?: IntproxyTimeouts;
  /** Called once when a timeout of `proxy` ends the session: the host releases the agent. */
  onIdle?: (reason: string) => void;
}

export interface IntproxyTimeouts {
  start_idle_timeout?: number;
  idle_timeout?: number;
  socket_timeout?: number;
  process_logging_interval?: number;
}

export interface IntproxyStats {
  layers: number;
  connectsRemote: number;
  connectsBypassed: number;
  lookups: number;
}

export class Intproxy {
  private constructor(
    readonly stats: IntproxyStats,
    /** Remote files (src/intproxy/files.ts). */
    readonly files: FileProxy,
    /** Incoming traffic (src/intproxy/incoming.ts), when the agent link can carry it. */
    readonly incoming: IncomingManager | undefined,
    /** feature.env.load_from_process: what the program's first layer applies (src/local/process.ts sets it). */
    readonly programEnv: ProgramEnv,
    private readonly outgoing: Outgoing,
    private readonly layers: LayerServer,
    private readonly timers: Timers,
  ) {}

  static async start(opts: IntproxyOptions, host = '127.0.0.1'): Promise<Intproxy> {
    const { agent, features, log } = opts;
    const stats: IntproxyStats = { layers: 0, connectsRemote: 0, connectsBypassed: 0, lookups: 0 };
    const names = new NameCache();
    // Filters are compiled here: a bad one fails start() before anything listens.
    const outgoing = new Outgoing(agent, {
      features,
      log,
      stats,
      namesOf: (ip) => names.namesOf(ip),
      acceptTimeoutMs: opts.acceptTimeoutMs,
      ownNamespace: opts.ownNamespace,
      fdPassing: opts.fdPassing,
      unixListenDir: opts.unixListenDir,
    });
    const dns = new DnsResolver(agent, features, log, stats, names);
    const files = new FileProxy(agent, features.fs, log.child('files'));
    const incoming = agent.capabilities.incoming ? new IncomingManager(agent, features, log.child('incoming'), opts.beforeIncoming, opts.fdPassing) : undefined;
    const timers = new Timers(opts.proxy ?? {}, log, opts.onIdle);
    const socketTimeoutMs = opts.proxy?.socket_timeout ? opts.proxy.socket_timeout * 1000 : undefined;
    const programEnv = new ProgramEnv();
    const layers = await LayerServer.listen(host, { files, outgoing, dns, incoming, env: programEnv }, log, stats, {
      socketTimeoutMs,
      onCount: (n) => timers.count(n),
    });
    timers.start(() => layers.processes());
    return new Intproxy(stats, files, incoming, programEnv, outgoing, layers, timers);
  }

  /** The value of MIRRORD_LAYER_ADDR. */
  get address(): string {
    return this.layers.address;
  }

  async close(): Promise<void> {
    this.timers.stop();
    this.incoming?.close();
    this.outgoing.close();
    await this.layers.close();
  }
}

/**
 * internal_proxy.start_idle_timeout and idle_timeout (mirrord's intproxy exits after them; ours ends
 * the session through onIdle) and process_logging_interval.
 */
class Timers {
  private idle: NodeJS.Timeout | undefined;
  private logTimer: NodeJS.Timeout | undefined;
  private seen = false;
  private fired = false;
  private stopped = false;

  constructor(
    private readonly t: IntproxyTimeouts,
    private readonly log: Logger,
    private readonly onIdle?: (reason: string) => void,
  ) {}

  start(processes: () => LayerProcess[]): void {
    if (this.t.start_idle_timeout && this.onIdle) {
      const s = this.t.start_idle_timeout;
      this.arm(s, `no process of the program connected to the intproxy within ${s} s (internal_proxy.start_idle_timeout)`);
    }
    const every = this.t.process_logging_interval;
    if (every) {
      this.logTimer = setInterval(() => {
        const list = processes();
        this.log.info(`${list.length} process${list.length === 1 ? '' : 'es'} connected`);
        const now = Date.now();
        for (const p of list) {
          this.log.info(
            `connected: pid ${p.pid ?? '?'}${p.parentPid ? ` (parent ${p.parentPid})` : ''} ${p.exe ?? '(no hello yet)'}, for ${Math.round((now - p.since) / 1000)} s`,
          );
        }
      }, every * 1000);
      this.logTimer.unref();
    }
  }

  /** The number of connected processes changed. */
  count(open: number): void {
    if (this.stopped || this.fired) return;
    if (open > 0) {
      this.seen = true;
      this.disarm();
      return;
    }
    if (this.seen && this.t.idle_timeout && this.onIdle) {
      const s = this.t.idle_timeout;
      this.arm(s, `no process of the program was connected to the intproxy for ${s} s (internal_proxy.idle_timeout)`);
    }
  }

  private arm(seconds: number, reason: string): void {
    this.disarm();
    this.idle = setTimeout(() => {
      if (this.stopped || this.fired) return;
      this.fired = true;
      this.log.info(reason);
      this.onIdle?.(reason);
    }, seconds * 1000);
    this.idle.unref();
  }

  private disarm(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = undefined;
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
    if (this.logTimer) clearInterval(this.logTimer);
  }
}
