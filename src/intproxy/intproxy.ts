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
import { LayerServer } from './layer-server.js';
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
  /** The socket helper passed the session's test: remote connects take sockets (docs/fast-path.md). */
  fdPassing?: boolean;
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
    private readonly outgoing: Outgoing,
    private readonly layers: LayerServer,
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
    });
    const dns = new DnsResolver(agent, features, log, stats, names);
    const files = new FileProxy(agent, features.fs, log.child('files'));
    const incoming = agent.capabilities.incoming ? new IncomingManager(agent, features, log.child('incoming'), opts.beforeIncoming) : undefined;
    const layers = await LayerServer.listen(host, { files, outgoing, dns, incoming }, log, stats);
    return new Intproxy(stats, files, incoming, outgoing, layers);
  }

  /** The value of MIRRORD_LAYER_ADDR. */
  get address(): string {
    return this.layers.address;
  }

  async close(): Promise<void> {
    this.incoming?.close();
    this.outgoing.close();
    await this.layers.close();
  }
}
