import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { AgentConnection } from '../agent-link/connection.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { ApSessionInfo } from '../../common/protocol/agent/index.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { LABEL_SESSION, LABEL_TARGET } from '../platforms/docker/labels.js';
import { LABEL_SHARED, listAgents, visitSharedAgent } from '../platforms/docker/shared-agent.js';
import { findContainer } from '../platforms/docker/target.js';
import { parseTarget } from '../target.js';
import { loadConfig } from '../config/load.js';
import { kubeConfigured } from '../config/kubeconfig.js';

export interface StatusFlags {
  target?: string;
  output?: string;
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  configFile?: string;
  docker?: boolean; // --no-docker
  kube?: boolean; // --no-kube
}

/** One agent and the sessions it serves. */
export interface AgentStatus {
  target: string;
  agent: string;
  shared: boolean;
  sessions: ApSessionInfo[];
}

/**
 * `mirrord status`: the agents running on the Docker engine (of one target with -t) and the agent
 * pods of a Kubernetes namespace, with their sessions, so a developer sees who steals what. A shared
 * agent is asked over the same relay a session joins with (`agent.sessions`: ids, clients with their
 * session keys, ports, modes, filters, since when; never anyone's traffic); an agent of one session
 * is shown from its labels.
 */
export async function statusCommand(flags: StatusFlags, log: Logger, out: (s: string) => void): Promise<number> {
  const result: AgentStatus[] = [];
  let tried = 0;
  const spec = flags.target ? parseTarget(flags.target) : undefined;
  if (spec && spec.kind !== 'docker')
    throw new MirrordError(
      `mirrord status -t takes Docker targets only, got ${flags.target}`,
      ExitCode.Usage,
      'Use -t docker/NAME, or -n NAMESPACE for Kubernetes agents',
    );
  if (flags.docker !== false) {
    const docker = createDocker();
    try {
      await checkEngine(docker, spec ? undefined : 2000);
      tried++;
      const targetId = spec?.kind === 'docker' ? (await findContainer(docker, spec.container)).id : undefined;
      result.push(...(await agentStatuses(docker, log, targetId)));
    } catch (err) {
      // -t names a Docker target: the engine must answer. Otherwise Kubernetes may still.
      if (spec) throw err;
      log.debug(`status: Docker engine skipped: ${(err as Error).message}`);
    }
  }
  if (!spec && flags.kube !== false) {
    const { config } = await loadConfig({ file: flags.configFile });
    const kubeconfig = flags.kubeconfig ? path.resolve(flags.kubeconfig) : config.kubeconfig;
    if (kubeConfigured(kubeconfig)) {
      tried++;
      // Loaded only when used: the Kubernetes client takes ~0.3 s to import.
      const { connectKube } = await import('../platforms/kubernetes/client.js');
      const { kubeAgentStatuses } = await import('./status-kube.js');
      const kube = connectKube({ kubeconfig, context: flags.context ?? config.kube_context, acceptInvalidCertificates: config.accept_invalid_certificates });
      const t = config.target;
      const namespace = flags.namespace ?? (typeof t === 'object' ? t.namespace : undefined) ?? config.agent.namespace ?? kube.defaultNamespace;
      result.push(...(await kubeAgentStatuses(kube, namespace, log)));
    }
  }
  if (tried === 0) {
    throw new MirrordError('nothing to show: no kubeconfig found and no Docker engine answers', ExitCode.Platform, 'Set KUBECONFIG, or start Docker');
  }
  if (flags.output === 'json') {
    out(JSON.stringify(result));
    return 0;
  }
  if (result.length === 0) out('no mirrord agent runs on this Docker engine or in this namespace');
  for (const r of result) {
    out(`${r.target}: ${r.shared ? 'shared agent' : 'agent'} ${r.agent}, ${r.sessions.length} session(s)`);
    for (const line of sessionLines(r)) out(`  ${line}`);
  }
  return 0;
}

/** One line per session: id, client, since when, and what it mirrors or steals with which filter. */
export function sessionLines(r: AgentStatus): string[] {
  return r.sessions.map((s) => {
    const subs = s.subscriptions.map((p) => `${p.mode} ${p.port}${p.filter ? ` (${p.filter})` : ''}`).join(', ');
    return `session ${s.session}${s.client ? ` ${s.client}` : ''} since ${s.since}${subs ? `: ${subs}` : ''}`;
  });
}

/** The agents on the engine (of one target when given) with their sessions; `mirrord ls` shows them too. */
export async function agentStatuses(docker: ReturnType<typeof createDocker>, log: Logger, targetId?: string): Promise<AgentStatus[]> {
  const names = new Map<string, string>();
  const nameOf = async (id: string) => {
    if (!names.has(id))
      names.set(
        id,
        await docker
          .getContainer(id)
          .inspect()
          .then(
            (i) => i.Name.replace(/^\//, ''),
            () => id.slice(0, 12),
          ),
      );
    return names.get(id)!;
  };
  const result: AgentStatus[] = [];
  for (const a of await listAgents(docker, targetId)) {
    const target = `docker/${await nameOf(a.Labels[LABEL_TARGET] ?? '')}`;
    const shared = !!a.Labels[LABEL_SHARED];
    let sessions: ApSessionInfo[];
    if (shared) {
      sessions = await askShared(docker, a, log).catch((err: Error) => {
        log.warn(`agent ${a.Id.slice(0, 12)} did not answer: ${err.message}`);
        return [];
      });
    } else {
      // An agent of one session: what its labels say.
      sessions = [{ session: a.Labels[LABEL_SESSION] ?? '?', client: '', since: new Date(a.Created * 1000).toISOString(), subscriptions: [] }];
    }
    result.push({ target, agent: a.Id.slice(0, 12), shared, sessions });
  }
  return result;
}

async function askShared(docker: ReturnType<typeof createDocker>, agent: Parameters<typeof visitSharedAgent>[1], log: Logger): Promise<ApSessionInfo[]> {
  const token = randomBytes(24).toString('base64url');
  const visit = await visitSharedAgent(docker, agent, { session: `status${randomBytes(4).toString('hex')}`, token, logLevel: 'warn', log });
  try {
    const conn = await AgentConnection.connect(visit.link, { token, handshakeTimeoutMs: 10_000, log: log.child('link'), client: 'mirrord status' });
    try {
      return (await conn.request('agent.sessions', {})).sessions;
    } finally {
      conn.close();
    }
  } finally {
    await visit.close();
  }
}
