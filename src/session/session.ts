import { randomBytes } from 'node:crypto';
import type { MirrordConfig, ResolvedFeatures } from '../config/schema.js';
import { agentKeysEnv } from '../config/agent-schema.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import type { KubeSettings } from '../platforms/kubernetes/client.js';
import type { KubeAgentConfig } from '../platforms/kubernetes/platform.js';
import type { AgentHandle, ResolvedTarget, TargetPlatform } from '../platforms/platform.js';
import type { Progress } from '../progress.js';
import { formatTarget, type TargetSpec } from '../target.js';
import { copyTarget } from '../copy-target/session.js';
import { phase } from './phases.js';
import { fdPassUnavailable, fdPassingSetting, type FdPass } from './fd-pass.js';

/**
 * One session for every local side: the agent next to the target, the intproxy wherever the local
 * side needs it (in this process for `exec`, in a sidecar container for a local container), and one
 * teardown path. A local side (a process, a container, later a dev container or compose service) is
 * a module that takes a started Session and runs its program with `layerEnv()`.
 */
export interface SessionOptions<H> {
  target: TargetSpec;
  features: ResolvedFeatures;
  agent: MirrordConfig['agent'];
  /** Kubernetes targets: kubeconfig and context (config keys kubeconfig, kube_context). */
  kube?: KubeSettings;
  /** Added to the labels of everything the session creates (mirrord up's key). */
  labels?: Record<string, string>;
  /** Config skip_processes: programs the layer leaves alone. */
  skipProcesses?: string[];
  /** The session key (config `key`): shown to others by `mirrord status` on a shared agent. */
  key?: string;
  /** Config internal_proxy and external_proxy: the intproxy's and the sidecar relay's timeouts and logs. */
  proxies?: ProxySettings;
  /** Where the intproxy runs (src/session/in-process.ts, src/session/sidecar.ts). */
  intproxy: IntproxyHost<H>;
  log: Logger;
  progress: Progress;
  /** Injected for tests; chosen from the target kind otherwise. */
  platform?: TargetPlatform;
}

export interface ProxySettings {
  internal?: MirrordConfig['internal_proxy'];
  external?: MirrordConfig['external_proxy'];
}

/** What a host is given to start the intproxy against a running agent. */
export interface HostContext {
  id: string;
  token: string;
  target: ResolvedTarget;
  agent: AgentHandle;
  features: ResolvedFeatures;
  agentConfig: MirrordConfig['agent'];
  /** The session key, if any (SessionOptions.key). */
  key?: string;
  /** Config internal_proxy and external_proxy. */
  proxies: ProxySettings;
  log: Logger;
  progress: Progress;
  /** Starts what removes the agent's rules if the agent dies (the platform's guard), once; a no-op without one. */
  guard(agentPid: number | undefined): Promise<void>;
  /** The error for an agent that never answered on its link, with its last log lines. */
  didNotAnswer(err: unknown): MirrordError;
  /** The socket helper's directory when the session may use the fast path; the host probes it. */
  fdPass?: FdPass;
}

/** What every host gives the session, whatever it runs in. */
export interface HostedIntproxy {
  /** MIRRORD_LAYER_ADDR, as the layer sees it from where the program runs. */
  readonly layerAddr: string;
  /** The target's environment. */
  remoteEnv(): Promise<Record<string, string>>;
  /** The layer's file-rule hints (MIRRORD_FS_* variables). */
  fileHints(): Promise<Record<string, string>>;
  /** Called once if the link to the agent dies before close(). */
  onLinkLost(cb: (reason: string) => void): void;
  /** Ends the intproxy; the session stops the agent after it (or beside it, see closesWithAgent). */
  close(): Promise<void>;
  /** The host's close waits on something the agent's exit does not (a container's removal): run both at once. */
  readonly closesWithAgent?: boolean;
}

/** Where the intproxy runs; `H` is what the local side may use of it beyond HostedIntproxy. */
export interface IntproxyHost<H> {
  readonly name: string;
  /** The fast path's hosts: the socket helper's directory or volume for this session; the host then
   * probes HostContext.fdPass and gives its intproxy the answer. */
  makeFdPass?(session: string, log: Logger): FdPass | undefined | Promise<FdPass | undefined>;
  /** Its fast path works on any engine (container mode: everything runs on the engine's kernel). */
  readonly fdPassAnyEngine?: boolean;
  /** Before the agent starts: what can fail without leaving an agent behind (images, reaping). */
  prepare?(target: ResolvedTarget, log: Logger, progress: Progress): Promise<void>;
  start(ctx: HostContext): Promise<H & HostedIntproxy>;
}

export interface Session<H> {
  readonly id: string;
  readonly target: ResolvedTarget;
  readonly targetDisplay: string;
  readonly features: ResolvedFeatures;
  /** The intproxy as its host runs it. */
  readonly host: H & HostedIntproxy;
  /** Container mode's fast path: the Binds entry that gives the program's container the helper's socket. */
  readonly fdPassBind?: string;
  /** Every variable the layer needs in a process, except LD_PRELOAD (its path is the local side's). */
  layerEnv(): Promise<Record<string, string>>;
  onLinkLost(cb: (reason: string) => void): void;
  /** The one teardown path: the intproxy, the agent, its guard; safe to call twice. */
  close(): Promise<void>;
}

/** The platform of a target; the Kubernetes client (~0.3 s to load) only for Kubernetes targets. */
export async function platformFor(target: TargetSpec, opts: { agent: MirrordConfig['agent']; kube?: KubeSettings }): Promise<TargetPlatform> {
  if (target.kind === 'docker') return new DockerPlatform(undefined, { sharedAgent: !!opts.agent.shared && !opts.agent.image });
  const { KubernetesPlatform } = await import('../platforms/kubernetes/platform.js');
  const a = opts.agent;
  return new KubernetesPlatform(opts.kube ?? {}, {
    ...a,
    namespace: a.namespace ?? (target.kind === 'targetless' ? target.namespace : undefined),
    tolerations: a.tolerations as KubeAgentConfig['tolerations'],
    resources: a.resources as KubeAgentConfig['resources'],
  });
}

/** The session may write the target's files: write mode, or read_write rules outside local mode. */
export function needsFsWrite(features: ResolvedFeatures): boolean {
  return features.fs.mode === 'write' || (features.fs.mode !== 'local' && (features.fs.read_write?.length ?? 0) > 0);
}

export async function startSession<H>(opts: SessionOptions<H>): Promise<Session<H>> {
  const { log, progress } = opts;
  const platform = opts.platform ?? (await platformFor(opts.target, opts));
  const id = randomBytes(6).toString('hex');
  const token = randomBytes(24).toString('base64url');

  phase(log, 'platform');
  progress.update(`looking up ${formatTarget(opts.target)}`);
  // The reaper (which never fails) and the target's look-up are independent engine calls: together.
  const [original] = await Promise.all([platform.resolveTarget(opts.target), platform.reap(log.child('reaper'))]);
  phase(log, 'reaped, target found');
  const copy = opts.features.copy_target
    ? await copyTarget(platform, original, {
        session: id,
        copy: opts.features.copy_target,
        kube: opts.kube,
        startupTimeoutMs: opts.agent.startup_timeout * 1000,
        progress,
        log,
      })
    : undefined;
  const target = copy?.target ?? original;
  phase(log, 'target resolved');
  let fdPass: FdPass | undefined;
  const removeFdPass = async () => {
    try {
      await fdPass?.remove();
    } catch (err) {
      log.debug(`cannot remove ${fdPass?.hostDir}: ${(err as Error).message}`);
    }
  };
  const agent = await startAgent().catch(async (err: unknown) => {
    await removeFdPass();
    await copy?.release();
    throw err;
  });
  async function startAgent(): Promise<AgentHandle> {
    await opts.intproxy.prepare?.(target, log, progress);
    const noFdPass = opts.intproxy.makeFdPass
      ? fdPassUnavailable(fdPassingSetting(opts.agent), opts.target, opts.agent.shared ?? false, opts.intproxy.fdPassAnyEngine ? {} : process.env)
      : `the ${opts.intproxy.name} intproxy has no fast path`;
    if (noFdPass) log.info(`data path: stream (${noFdPass})`);
    fdPass = noFdPass ? undefined : await opts.intproxy.makeFdPass?.(id, log);
    phase(log, 'prepared');
    return platform.startAgent(target, {
      session: id,
      token,
      image: opts.agent.image,
      logLevel: opts.agent.log_level,
      fsWrite: needsFsWrite(opts.features),
      startupTimeoutMs: opts.agent.startup_timeout * 1000,
      labels: opts.labels,
      shared: opts.agent.shared ?? false,
      ttlSeconds: opts.agent.ttl,
      progress,
      log: log.child('agent'),
      fdPass: fdPass && { hostDir: fdPass.hostDir, token: fdPass.token },
      agentEnv: agentKeysEnv(opts.agent),
      disabledCapabilities: opts.agent.privileged ? undefined : opts.agent.disabled_capabilities,
    });
  }

  phase(log, 'agent link');
  let guarded: Promise<void> | undefined;
  const ctx: HostContext = {
    id,
    token,
    target,
    agent,
    features: opts.features,
    agentConfig: opts.agent,
    key: opts.key,
    proxies: opts.proxies ?? {},
    log,
    progress,
    fdPass,
    guard: (pid) => (guarded ??= pid && agent.startGuard ? agent.startGuard(pid) : Promise.resolve()),
    didNotAnswer(err) {
      const logs = agent.recentLogs();
      return new MirrordError(
        `the agent on ${target.display} did not answer: ${(err as Error).message}${logs.length ? ` (agent said: ${logs.slice(-3).join(' | ')})` : ''}`,
        ExitCode.Agent,
        'Run with MIRRORD_LOG=debug for the agent log; raise agent.startup_timeout if the engine is slow',
        { cause: err },
      );
    },
  };
  let host: H & HostedIntproxy;
  try {
    host = await opts.intproxy.start(ctx);
  } catch (err) {
    await agent.stop();
    await removeFdPass();
    await copy?.release();
    throw err;
  }

  let closing: Promise<void> | undefined;
  let healing: Promise<void> | undefined;
  const lost: Array<(reason: string) => void> = [];
  host.onLinkLost((reason) => {
    if (closing) return;
    // The agent may be gone with its guard: make sure no rule of ours keeps redirecting the
    // target's clients (only sessions that asked for incoming traffic can have any).
    if (guarded && agent.heal) healing = agent.heal();
    for (const cb of lost) cb(reason);
  });

  return {
    id,
    target,
    targetDisplay: target.display,
    features: opts.features,
    host,
    fdPassBind: fdPass?.enabled ? fdPass.programBind : undefined,
    async layerEnv() {
      const env: Record<string, string> = { ...(await host.fileHints()), MIRRORD_LAYER_ADDR: host.layerAddr, MIRRORD_SESSION: id };
      if (opts.skipProcesses?.length) env.MIRRORD_SKIP_PROCESSES = opts.skipProcesses.join(';');
      // feature.network.outgoing.unix_streams: the layer asks the intproxy about unix stream connects
      // (every local side: a process, a local container through its sidecar, a dev container).
      if (opts.features.outgoing.unix_streams?.length) env.MIRRORD_UNIX_STREAMS = '1';
      // feature.network.incoming.listen_ports: a bind of `asked` really binds `used` (layer/src/listen.c).
      const listenPorts = opts.features.incoming.listen_ports ?? [];
      if (listenPorts.length) env.MIRRORD_LISTEN_PORTS = listenPorts.map(([asked, used]) => `${asked}:${used}`).join(';');
      Object.assign(env, fdPass?.layerEnv());
      return env;
    },
    onLinkLost: (cb) => lost.push(cb),
    close() {
      closing ??= (async () => {
        if (host.closesWithAgent) {
          // Independent exits: waiting for both at once saves a polling round at every session's end.
          await Promise.all([host.close(), agent.stop()]);
        } else {
          await host.close();
          await agent.stop();
        }
        await healing;
        await removeFdPass();
        await copy?.release();
      })();
      return closing;
    },
  };
}
