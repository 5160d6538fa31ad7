import path from 'node:path';
import { kubeConfigured } from '../config/kubeconfig.js';
import { loadConfig } from '../config/load.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { agentStatuses, sessionLines, type AgentStatus } from './status.js';

export interface LsFlags {
  namespace?: string;
  configFile?: string;
  context?: string;
  kubeconfig?: string;
  output?: string;
  docker?: boolean; // --no-docker
  kube?: boolean; // --no-kube
  /** --sessions: the sessions of each Docker target's agents under it (the default on a terminal). */
  sessions?: boolean;
}

/**
 * `mirrord ls`: the targets one can pass to -t. Kubernetes targets of the namespace when a kubeconfig
 * is configured, then running containers of the Docker engine when it answers. With --output json,
 * a JSON array of target strings (what mirrord's IDE extensions read). On a terminal (or with
 * --sessions) each Docker target is followed by its agents' sessions, indented; piped, the text
 * stays one target per line, as scripts read it.
 */
export async function lsCommand(flags: LsFlags, log: Logger, out: (s: string) => void): Promise<number> {
  const { config } = await loadConfig({ file: flags.configFile });
  const targets: string[] = [];
  const showSessions = flags.output !== 'json' && (flags.sessions ?? process.stdout.isTTY === true);
  const sessionsOf = new Map<string, string[]>();
  const addSessions = (target: string, a: AgentStatus) => {
    const lines = sessionsOf.get(target) ?? [];
    lines.push(`${a.shared ? 'shared agent' : 'agent'} ${a.agent}:`, ...sessionLines(a).map((l) => `  ${l}`));
    sessionsOf.set(target, lines);
  };
  const kubeconfig = flags.kubeconfig ? path.resolve(flags.kubeconfig) : config.kubeconfig;
  let tried = 0;
  if (flags.kube !== false && kubeConfigured(kubeconfig)) {
    tried++;
    // Loaded only when used: the Kubernetes client takes ~0.3 s to import.
    const { connectKube } = await import('../platforms/kubernetes/client.js');
    const { listKubeTargets } = await import('../platforms/kubernetes/list.js');
    const kube = connectKube({ kubeconfig, context: flags.context ?? config.kube_context });
    const t = config.target;
    const namespace = flags.namespace ?? (typeof t === 'object' ? t.namespace : undefined) ?? kube.defaultNamespace;
    const kubeTargets = await listKubeTargets(kube, namespace);
    targets.push(...kubeTargets);
    if (showSessions) {
      const { kubeAgentStatuses } = await import('./status-kube.js');
      for (const a of await kubeAgentStatuses(kube, namespace, log).catch((err: Error) => (log.debug(`ls: agent pods skipped: ${err.message}`), []))) {
        // The agent names pod/P/container/C; ls names a pod of one container pod/P.
        const under = kubeTargets.includes(a.target) ? a.target : a.target.replace(/\/container\/[^/]+$/, '');
        addSessions(under, a);
      }
    }
  }
  if (flags.docker !== false) {
    const docker = createDocker();
    try {
      await checkEngine(docker, 2000);
      tried++;
      const containers = await docker.listContainers({ filters: { status: ['running'] } });
      for (const c of containers) {
        // Our own agents, sidecars and guards are not targets.
        if (c.Labels?.['dev.mirrord.agent']) continue;
        const name = c.Names?.[0]?.replace(/^\//, '');
        if (name) targets.push(`docker/${name}`);
      }
      if (showSessions) {
        for (const a of await agentStatuses(docker, log)) addSessions(a.target, a);
      }
    } catch (err) {
      log.debug(`ls: Docker engine skipped: ${(err as Error).message}`);
    }
  }
  if (tried === 0) {
    throw new MirrordError('nothing to list: no kubeconfig found and no Docker engine answers', ExitCode.Platform, 'Set KUBECONFIG, or start Docker');
  }
  if (flags.output === 'json') out(JSON.stringify(targets));
  else
    for (const t of targets) {
      out(t);
      for (const line of sessionsOf.get(t) ?? []) out(`  ${line}`);
    }
  return 0;
}
