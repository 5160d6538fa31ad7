import { randomBytes } from 'node:crypto';
import { AgentConnection } from '../agent-link/connection.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { ApSessionInfo } from '../../common/protocol/agent/index.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { LABEL_SESSION, LABEL_TARGET } from '../platforms/docker/labels.js';
import { LABEL_SHARED, listAgents, visitSharedAgent } from '../platforms/docker/shared-agent.js';
import { findContainer } from '../platforms/docker/target.js';
import { parseTarget } from '../target.js';

export interface StatusFlags {
  target?: string;
  output?: string;
}

/** One agent on the engine and the sessions it serves. */
export interface AgentStatus {
  target: string;
  agent: string;
  shared: boolean;
  sessions: ApSessionInfo[];
}

/**
 * `mirrord status`: the agents running on the Docker engine (of one target with -t) and their
 * sessions, so a developer sees who steals what. A shared agent is asked over the same relay a
 * session joins with (`agent.sessions`: ids, clients, ports, modes, filters, since when; never
 * anyone's traffic); an agent of one session is shown from its labels.
 */
export async function statusCommand(flags: StatusFlags, log: Logger, out: (s: string) => void): Promise<number> {
  let targetId: string | undefined;
  const docker = createDocker();
  await checkEngine(docker);
  if (flags.target) {
    const spec = parseTarget(flags.target);
    if (spec.kind !== 'docker') throw new MirrordError(`mirrord status shows Docker targets only, got ${flags.target}`, ExitCode.Usage, 'Use -t docker/NAME');
    targetId = (await findContainer(docker, spec.container)).id;
  }
  const result = await agentStatuses(docker, log, targetId);
  if (flags.output === 'json') {
    out(JSON.stringify(result));
    return 0;
  }
  if (result.length === 0) out('no mirrord agent runs on this Docker engine');
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
