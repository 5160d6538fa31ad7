import { randomBytes } from 'node:crypto';
import { AgentConnection } from '../agent-link/connection.js';
import type { MirrordConfig, ResolvedFeatures } from '../config/schema.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { Intproxy } from '../intproxy/intproxy.js';
import type { Logger } from '../../common/log.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import type { KubeSettings } from '../platforms/kubernetes/client.js';
import type { KubeAgentConfig } from '../platforms/kubernetes/platform.js';
import type { AgentHandle, TargetPlatform } from '../platforms/platform.js';
import type { Progress } from '../progress.js';
import { formatTarget, type TargetSpec } from '../target.js';
import { AP_CLIENT } from '../../common/version.js';

export interface SessionOptions {
  target: TargetSpec;
  features: ResolvedFeatures;
  agent: MirrordConfig['agent'];
  /** Kubernetes targets: kubeconfig and context (config keys kubeconfig, kube_context). */
  kube?: KubeSettings;
  log: Logger;
  progress: Progress;
  /** Injected for tests; chosen from the target kind otherwise. */
  platform?: TargetPlatform;
}

/** One running session: the agent, the link to it, and the intproxy the layers talk to. */
export interface Session {
  readonly id: string;
  readonly targetDisplay: string;
  readonly agent: AgentConnection;
  readonly intproxy: Intproxy;
  /** Called once if the agent link dies before close(). */
  onLinkLost(cb: (reason: string) => void): void;
  close(): Promise<void>;
}

/** The platform of a target; the Kubernetes client (~0.3 s to load) only for Kubernetes targets. */
export async function platformFor(target: TargetSpec, opts: Pick<SessionOptions, 'agent' | 'kube'>): Promise<TargetPlatform> {
  if (target.kind === 'docker') return new DockerPlatform();
  const { KubernetesPlatform } = await import('../platforms/kubernetes/platform.js');
  const a = opts.agent;
  return new KubernetesPlatform(opts.kube ?? {}, {
    ...a,
    namespace: a.namespace ?? (target.kind === 'targetless' ? target.namespace : undefined),
    tolerations: a.tolerations as KubeAgentConfig['tolerations'],
    resources: a.resources as KubeAgentConfig['resources'],
  });
}

export async function startSession(opts: SessionOptions): Promise<Session> {
  const { log, progress } = opts;
  const platform = opts.platform ?? (await platformFor(opts.target, opts));
  const id = randomBytes(6).toString('hex');
  const token = randomBytes(24).toString('base64url');

  await platform.reap(log.child('reaper'));
  progress.update(`looking up ${formatTarget(opts.target)}`);
  const target = await platform.resolveTarget(opts.target);
  const handle: AgentHandle = await platform.startAgent(target, {
    session: id,
    token,
    image: opts.agent.image,
    logLevel: opts.agent.log_level,
    fsWrite: opts.features.fs.mode === 'write' || (opts.features.fs.mode !== 'local' && (opts.features.fs.read_write?.length ?? 0) > 0),
    startupTimeoutMs: opts.agent.startup_timeout * 1000,
    progress,
    log: log.child('agent'),
  });

  let agent: AgentConnection;
  try {
    progress.update(`waiting for the agent on ${target.display}`);
    agent = await AgentConnection.connect(handle.link, {
      token,
      client: AP_CLIENT,
      handshakeTimeoutMs: opts.agent.startup_timeout * 1000,
      log: log.child('link'),
    });
  } catch (err) {
    const logs = handle.recentLogs();
    await handle.stop();
    throw new MirrordError(
      `the agent on ${target.display} did not answer: ${(err as Error).message}${logs.length ? ` (agent said: ${logs.slice(-3).join(' | ')})` : ''}`,
      ExitCode.Agent,
      'Run with MIRRORD_LOG=debug for the agent log; raise agent.startup_timeout if the engine is slow',
      { cause: err },
    );
  }

  let intproxy: Intproxy;
  try {
    const agentPid = agent.info.agentPid;
    const beforeIncoming = handle.startGuard && agentPid ? () => handle.startGuard!(agentPid) : undefined;
    intproxy = await Intproxy.start({ agent, features: opts.features, log: log.child('intproxy'), beforeIncoming });
  } catch (err) {
    agent.close();
    await handle.stop();
    throw err;
  }

  let closing = false;
  const lost: Array<(reason: string) => void> = [];
  agent.onClose((err) => {
    if (closing) return;
    const reason = err?.message ?? 'the agent closed the link';
    for (const cb of lost) cb(reason);
  });

  return {
    id,
    targetDisplay: target.display,
    agent,
    intproxy,
    onLinkLost: (cb) => lost.push(cb),
    async close() {
      if (closing) return;
      closing = true;
      await intproxy.close();
      agent.close();
      await handle.stop();
    },
  };
}
