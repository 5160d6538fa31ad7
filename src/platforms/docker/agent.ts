import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import type { AgentHandle, AgentStartOptions } from '../platform.js';
import { attachContainer, type Attached } from './attach.js';
import { dockerUnreachable } from './client.js';
import { sessionLabels } from './labels.js';
import { removeContainer } from './remove.js';

/**
 * The least that works: reading the target's /proc/1/{root,environ} needs SYS_PTRACE (the target
 * holds capabilities the agent dropped) and DAC_READ_SEARCH (files of a non-root target user);
 * incoming traffic needs NET_ADMIN (iptables) and NET_RAW (legacy iptables opens a raw socket).
 */
export const AGENT_CAPABILITIES = ['SYS_PTRACE', 'DAC_READ_SEARCH', 'NET_ADMIN', 'NET_RAW'];
/**
 * Remote files in write mode: DAC_OVERRIDE lets the agent (uid 0 without capabilities) write and
 * create files and directories owned by another user of the target, as the target's own root
 * would. FOWNER/CHOWN are not needed: the agent never changes modes, owners or times. Added only
 * for sessions that may write (feature.fs mode write, or read_write rules).
 */
export const FS_WRITE_CAPABILITIES = ['DAC_OVERRIDE'];
/** The guard only removes the session's iptables rules when the agent dies. */
export const GUARD_CAPABILITIES = ['NET_ADMIN', 'NET_RAW', 'KILL'];
/**
 * The healer removes rules too, and tells live sessions from dead ones by reading every process's
 * environment in the target's PID namespace: agents hold capabilities it would otherwise lack,
 * which makes their /proc/PID/environ unreadable without SYS_PTRACE.
 */
export const HEAL_CAPABILITIES = ['NET_ADMIN', 'NET_RAW', 'SYS_PTRACE'];
/**
 * The agent's capabilities: the fewest it needs, less agent.disabled_capabilities (what needs a
 * dropped one then fails in the agent with a message naming it, agent/src/settings.ts).
 */
export function agentCapabilities(opts: Pick<AgentStartOptions, 'fsWrite' | 'disabledCapabilities'>): string[] {
  const off = new Set(opts.disabledCapabilities ?? []);
  return [...AGENT_CAPABILITIES, ...(opts.fsWrite ? FS_WRITE_CAPABILITIES : [])].filter((c) => !off.has(c));
}

/** The agent keys for the agent's environment (agentKeysEnv), as Docker takes them. */
export function agentKeyEnv(opts: Pick<AgentStartOptions, 'agentEnv'>): string[] {
  return Object.entries(opts.agentEnv ?? {}).map(([k, v]) => `${k}=${v}`);
}

/** Where the agent sees the socket helper's directory (docs/fast-path.md). */
const FDPASS_MOUNT = '/run/mirrord-fd';

/** A healer that has not finished by then is left to the next session's sweep. */
const HEAL_TIMEOUT_MS = 15_000;

/**
 * Starts the agent in a container that joins the target's network and PID namespaces, and returns
 * its attached stdin/stdout as the link: no published port, no bridge IP, works with a remote
 * DOCKER_HOST. With StdinOnce + AutoRemove the container goes away as soon as the link closes,
 * including when this process is killed.
 */
export async function startDockerAgent(docker: Docker, target: { id: string; name: string }, image: string, opts: AgentStartOptions): Promise<AgentHandle> {
  const log = opts.log;
  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      Image: image,
      name: `mirrord-agent-${opts.session}`,
      Env: [
        `MIRRORD_AGENT_TOKEN=${opts.token}`,
        'MIRRORD_AGENT_TARGET_PID=1',
        `MIRRORD_AGENT_LOG=${opts.logLevel}`,
        `MIRRORD_AGENT_SESSION=${opts.session}`,
        ...(opts.fdPass ? [`MIRRORD_AGENT_FDPASS_DIR=${FDPASS_MOUNT}`, `MIRRORD_AGENT_FDPASS_TOKEN=${opts.fdPass.token}`] : []),
        ...agentKeyEnv(opts),
      ],
      Labels: { ...sessionLabels('true', opts.session, target.id), ...opts.labels },
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: true,
      StdinOnce: true,
      Tty: false,
      HostConfig: {
        NetworkMode: `container:${target.id}`,
        PidMode: `container:${target.id}`,
        CapDrop: ['ALL'],
        CapAdd: agentCapabilities(opts),
        SecurityOpt: ['no-new-privileges'],
        ...(opts.fdPass ? { Binds: [`${opts.fdPass.hostDir}:${FDPASS_MOUNT}`] } : {}),
        AutoRemove: true,
        // The link runs over stdout; a log driver would copy (and JSON-encode) every byte of it.
        LogConfig: { Type: 'none', Config: {} },
      },
    });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404) {
      throw new MirrordError(`agent image ${image} is not on the Docker engine`, ExitCode.Agent, 'Remove agent.image to build it locally, or load that image');
    }
    if (status === undefined) throw dockerUnreachable(err);
    throw new MirrordError(`cannot create the agent container: ${(err as Error).message}`, ExitCode.Agent, 'See the Docker engine log', { cause: err });
  }

  let attached: Attached;
  try {
    attached = await attachContainer(docker, container, { name: 'agent', log });
  } catch (err) {
    await removeContainer(container, log);
    throw dockerUnreachable(err);
  }

  try {
    await container.start();
  } catch (err) {
    attached.raw.destroy();
    await removeContainer(container, log);
    const msg = (err as { json?: { message?: string } }).json?.message ?? (err as Error).message;
    throw new MirrordError(`the agent container did not start: ${msg}`, ExitCode.Agent, 'Check that the target is still running (docker ps)', {
      cause: err,
    });
  }

  const link = attached.link();
  let guard: Promise<Docker.Container | undefined> | undefined;
  let healing: Promise<void> | undefined;
  return {
    link,
    description: `agent container ${container.id.slice(0, 12)} on docker/${target.name}`,
    startGuard(agentPid: number) {
      guard ??= startGuard(docker, target.id, image, agentPid, opts).catch((err: Error) => {
        log.warn(`no guard for the agent (${err.message}); if the agent is killed, its rules stay until the next session`);
        return undefined;
      });
      return guard.then(() => undefined);
    },
    heal() {
      healing ??= runHealer(docker, target.id, image, opts).catch((err: Error) => {
        log.warn(`could not check the target's rules after losing the agent (${err.message}); the next session removes them`);
      });
      return healing;
    },
    async stop() {
      link.end();
      // The agent exits on stdin EOF and AutoRemove deletes it; make sure nothing is left if not.
      await removeContainer(container, log, 5000);
      attached.raw.destroy();
      // The guard exits by itself once the agent is gone.
      const g = await guard;
      if (g) await removeContainer(g, log, 3000);
    },
    recentLogs: () => attached.recentStderr(),
  };
}

/**
 * The guard: the agent image in guard mode, in the target's namespaces, watching the agent's pid
 * and removing the session's iptables rules the moment it is gone (docs/incoming.md).
 */
async function startGuard(docker: Docker, targetId: string, image: string, agentPid: number, opts: AgentStartOptions): Promise<Docker.Container> {
  const guard = await docker.createContainer({
    Image: image,
    name: `mirrord-guard-${opts.session}`,
    Env: [
      'MIRRORD_AGENT_MODE=guard',
      `MIRRORD_GUARD_PID=${agentPid}`,
      `MIRRORD_AGENT_SESSION=${opts.session}`,
      `MIRRORD_AGENT_LOG=${opts.logLevel}`,
      ...agentKeyEnv(opts),
    ],
    Labels: { ...sessionLabels('guard', opts.session, targetId), ...opts.labels },
    HostConfig: {
      NetworkMode: `container:${targetId}`,
      PidMode: `container:${targetId}`,
      CapDrop: ['ALL'],
      CapAdd: GUARD_CAPABILITIES,
      SecurityOpt: ['no-new-privileges'],
      AutoRemove: true,
      LogConfig: { Type: 'none', Config: {} },
    },
  });
  await guard.start();
  return guard;
}

/**
 * The healer (docs/incoming.md): the agent image in heal mode, once, in the target's namespaces.
 * It removes the chain of `chainOf` and those of other sessions whose agent is gone, then exits and
 * is removed (AutoRemove; waited for with condition "removed", as `docker run --rm` does).
 */
export async function runHealer(docker: Docker, targetId: string, image: string, opts: AgentStartOptions, chainOf = opts.session): Promise<void> {
  const c = await docker.createContainer({
    Image: image,
    name: `mirrord-heal-${opts.session}`,
    // chainOf: the session whose chain goes whatever its state ('' for a shared agent's session: only the sweep).
    Env: ['MIRRORD_AGENT_MODE=heal', `MIRRORD_AGENT_SESSION=${chainOf}`, `MIRRORD_AGENT_LOG=${opts.logLevel}`, ...agentKeyEnv(opts)],
    // The guard's role: the reaper and the tests treat it as the session's rule keeper.
    Labels: { ...sessionLabels('guard', opts.session, targetId), ...opts.labels },
    HostConfig: {
      NetworkMode: `container:${targetId}`,
      PidMode: `container:${targetId}`,
      CapDrop: ['ALL'],
      CapAdd: HEAL_CAPABILITIES,
      SecurityOpt: ['no-new-privileges'],
      AutoRemove: true,
      LogConfig: { Type: 'none', Config: {} },
    },
  });
  const removed = (c.wait({ condition: 'removed' }) as Promise<unknown>).catch(() => undefined);
  try {
    await c.start();
  } catch (err) {
    await removeContainer(c, opts.log);
    throw err;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), HEAL_TIMEOUT_MS)));
  const outcome = await Promise.race([removed, late]);
  clearTimeout(timer);
  if (outcome === 'late') {
    await removeContainer(c, opts.log);
    throw new Error(`the healer did not finish within ${HEAL_TIMEOUT_MS / 1000} s`);
  }
  opts.log.debug('healer done: the session has no rules left on the target');
}
