import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { Progress } from '../progress.js';
import type { TargetSpec } from '../target.js';

/** A target as found on its platform: enough to start an agent next to it and to describe it. */
export interface ResolvedTarget {
  spec: TargetSpec;
  /** Human-readable, for messages: `docker/web (3f2a9c01b2d4)`. */
  display: string;
  /** Platform-specific handle (container ID, pod + container ...). */
  id: string;
}

export interface AgentStartOptions {
  session: string;
  token: string;
  image?: string;
  logLevel: string;
  /** The session may write the target's files (feature.fs write mode or read_write rules). */
  fsWrite?: boolean;
  startupTimeoutMs: number;
  /** Added to the labels of everything the platform creates for the session (mirrord up's key). */
  labels?: Record<string, string>;
  /** Docker: join (or start) the target's shared agent (config agent.shared). */
  shared?: boolean;
  /** Seconds a shared agent stays after its last session (config agent.ttl). */
  ttlSeconds?: number;
  /** Docker: the socket helper's directory on the engine's host and its token (src/session/fd-pass.ts). */
  fdPass?: { hostDir: string; token: string };
  /** The agent keys the agent honours itself, as its environment (agentKeysEnv, src/config/agent-schema.ts). */
  agentEnv?: Record<string, string>;
  /** Docker: agent.disabled_capabilities, not given to the agent container (Kubernetes reads the config). */
  disabledCapabilities?: string[];
  progress: Progress;
  log: Logger;
}

/** A running agent: its byte link (AP frames) and how to take it down. */
export interface AgentHandle {
  link: Duplex;
  description: string;
  /** Ends the session: closes the link, waits for the agent to leave, removes what is left. */
  stop(): Promise<void>;
  /**
   * Starts what removes the agent's network rules if the agent dies (Docker: a guard container);
   * resolves when it runs. Optional: platforms whose objects clean up by themselves omit it.
   */
  startGuard?(agentPid: number): Promise<void>;
  /**
   * After the link is lost: makes sure the session's network rules are gone even if the agent and
   * its guard were killed together (Docker: a one-shot container of the agent image in the
   * target's namespaces), and sweeps those of other dead sessions. Resolves when done; never throws.
   */
  heal?(): Promise<void>;
  /** The agent's last log lines, to explain a failed start. */
  recentLogs(): string[];
  /** The AP window to grant each stream the agent sends on (AgentConnectionOptions.streamWindow). */
  streamWindow?: number;
}

/**
 * One interface per outside system, its implementations beside it (docker/, later kubernetes/).
 * Implementations throw MirrordError with a hint for everything the user can fix.
 */
export interface TargetPlatform {
  readonly name: string;
  resolveTarget(spec: TargetSpec): Promise<ResolvedTarget>;
  startAgent(target: ResolvedTarget, opts: AgentStartOptions): Promise<AgentHandle>;
  /** Removes agents of earlier sessions whose CLI is gone (the reaper); best effort. */
  reap(log: Logger): Promise<void>;
}
