/**
 * Everything the intproxy needs of the agent link, in one place. AgentConnection
 * (src/agent-link/connection.ts) implements it; tests and benchmarks pass small fakes, and each
 * part of the intproxy takes only the slice it uses (a Pick of this interface).
 */
import type { Duplex } from 'node:stream';
import type { ApMethods, ApOpen } from '../../common/protocol/agent/index.js';

/** What a link can carry beyond TCP streams and requests; a fake that cannot says so here. */
export interface AgentCapabilities {
  /** connectUdp works; without it a program's UDP flows stay local. */
  readonly udp: boolean;
  /** incoming.subscribe and onIncoming work; without it every listen() stays local. */
  readonly incoming: boolean;
}

export interface AgentPort {
  readonly capabilities: AgentCapabilities;
  /** A TCP connection from the target's network namespace. */
  connectTcp(host: string, port: number): Promise<Duplex>;
  /** A UDP flow from the target's namespace, one datagram per chunk; only if capabilities.udp. */
  connectUdp(host: string, port: number): Promise<Duplex>;
  /** A connection to the unix stream socket at `path` in the target's file system; absent: those stay local. */
  connectUnix?(path: string): Promise<Duplex>;
  /** One AP request (dns.lookup, fs.*, incoming.subscribe/unsubscribe, ...), typed by the method table. */
  request<M extends keyof ApMethods>(method: M, params: ApMethods[M]['params']): Promise<ApMethods[M]['result']>;
  /** Where connections the agent opens (incoming traffic) go; only used if capabilities.incoming. */
  onIncoming(handler: (info: ApOpen, stream: Duplex) => void): void;
}

/** The slices the parts take. */
export type OutgoingAgentPort = Pick<AgentPort, 'capabilities' | 'connectTcp' | 'connectUdp' | 'connectUnix'>;
export type RequestAgentPort = Pick<AgentPort, 'request'>;
export type IncomingAgentPort = Pick<AgentPort, 'request' | 'onIncoming'>;
