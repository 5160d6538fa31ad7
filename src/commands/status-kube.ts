import { randomBytes } from 'node:crypto';
import { AgentConnection } from '../agent-link/connection.js';
import type { Logger } from '../../common/log.js';
import type { ApSessionInfo } from '../../common/protocol/agent/index.js';
import { ANNOTATION_OWNER, ANNOTATION_TARGET, LABEL_APP, LABEL_SESSION, LABEL_SHARED } from '../platforms/kubernetes/agent-spec.js';
import { call, type Kube } from '../platforms/kubernetes/client.js';
import { JOB_AGENT_PORT } from '../platforms/kubernetes/platform.js';
import { connectAgent } from '../platforms/kubernetes/port-forward.js';
import type { AgentStatus } from './status.js';

/**
 * The mirrord agent pods of one namespace and their sessions, for `mirrord status` and `mirrord ls`.
 * A shared agent is asked as a session joins it (port-forward to its listener, the join line, then
 * AP's `agent.sessions` under a session of its own that subscribes nothing); an agent of one session
 * is shown from its labels. Ephemeral-container agents live in their target's pod and are not listed.
 */
export async function kubeAgentStatuses(kube: Kube, namespace: string, log: Logger): Promise<AgentStatus[]> {
  const pods = await call({ verb: 'list', resource: 'pods', namespace }, () =>
    kube.core.listNamespacedPod({ namespace, labelSelector: `${LABEL_APP}=mirrord-agent` }),
  );
  const result: AgentStatus[] = [];
  for (const pod of pods.items) {
    const name = pod.metadata?.name;
    if (!name || pod.status?.phase !== 'Running' || pod.metadata?.deletionTimestamp) continue;
    const labels = pod.metadata?.labels ?? {};
    const target = pod.metadata?.annotations?.[ANNOTATION_TARGET] ?? `targetless (namespace ${namespace})`;
    const shared = !!labels[LABEL_SHARED];
    let sessions: ApSessionInfo[];
    if (shared) {
      sessions = await askShared(kube, namespace, name, log).catch((err: Error) => {
        log.warn(`agent pod/${name} did not answer: ${err.message}`);
        return [];
      });
    } else {
      const since = pod.status?.startTime ? new Date(pod.status.startTime).toISOString() : '?';
      sessions = [{ session: labels[LABEL_SESSION] ?? '?', client: pod.metadata?.annotations?.[ANNOTATION_OWNER] ?? '', since, subscriptions: [] }];
    }
    result.push({ target, agent: `pod/${name} (namespace ${namespace})`, shared, sessions });
  }
  return result;
}

async function askShared(kube: Kube, namespace: string, pod: string, log: Logger): Promise<ApSessionInfo[]> {
  const token = randomBytes(24).toString('base64url');
  const link = await connectAgent(
    kube.kc,
    namespace,
    pod,
    JOB_AGENT_PORT,
    Date.now() + 15_000,
    () => Promise.resolve(),
    (m) => log.debug(m),
  );
  try {
    link.write(`${JSON.stringify({ session: `status${randomBytes(4).toString('hex')}`, token })}\n`);
    const conn = await AgentConnection.connect(link, { token, handshakeTimeoutMs: 10_000, log: log.child('link'), client: 'mirrord status' });
    try {
      return (await conn.request('agent.sessions', {})).sessions;
    } finally {
      conn.close();
    }
  } finally {
    link.destroy();
  }
}
