import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import { AP_JOINED_LINE } from '../../../common/protocol/agent/index.js';
import type { AgentHandle, AgentStartOptions } from '../platform.js';
import { GUARD_CAPABILITIES, agentCapabilities, agentKeyEnv, runHealer } from './agent.js';
import { joinStreams } from './attach.js';
import { LINK_BUFFER_BYTES, demuxAttach } from './demux.js';
import { dockerUnreachable } from './client.js';
import { LABEL_AGENT, LABEL_OWNER, LABEL_SESSION, LABEL_TARGET, sessionLabels } from './labels.js';

/**
 * One agent, many sessions (agent.shared, docs/incoming.md): a session looks for the target's
 * shared agent of its own kind on the engine (by label: same target, same agent image, same
 * capabilities) and joins it with `docker exec` of the agent image in join mode, a relay between
 * the exec's stdio and the agent's socket; with none, it starts one. The shared agent belongs to no
 * session (owner label `shared`, which no reaper judges): it leaves by itself agent.ttl seconds
 * after its last session, its rules removed.
 */
export const LABEL_SHARED = 'dev.mirrord.shared';
/** The shared agent's socket as a path on the host (local engines), for sessions of the host user who started it. */
export const LABEL_HOST_SOCKET = 'dev.mirrord.host-socket';
const HOST_SOCKET_MOUNT = '/run/mirrord-host';
const SHARED_OWNER = 'shared';
const JOIN_TIMEOUT_MS = 15_000;

/**
 * Agents are shared only when the same image (the same code) with the same capabilities and agent
 * keys (agentKeysEnv) would be started.
 */
export function sharedKey(image: string, fsWrite: boolean, agentKeys: string[] = []): string {
  return createHash('sha256')
    .update(`${image}|${fsWrite ? 'rw' : 'ro'}${agentKeys.length ? `|${agentKeys.join('|')}` : ''}`)
    .digest('hex')
    .slice(0, 16);
}

async function findShared(docker: Docker, targetId: string, key: string): Promise<Docker.ContainerInfo | undefined> {
  const list = await docker.listContainers({
    filters: { label: [`${LABEL_AGENT}=true`, `${LABEL_TARGET}=${targetId}`, `${LABEL_SHARED}=${key}`], status: ['running'] },
  });
  return list[0];
}

/**
 * A directory for the shared agent's host socket: `$TMPDIR/mirrord-UID/shared/NAME/sock`, the
 * top one this user's and 0700 (so only they, and root, can reach the socket), the last one open
 * to the agent (root in its container, without DAC_OVERRIDE) to create its socket in. None when
 * the engine is not on this machine (its bind mounts are not our files).
 */
function hostSocketDir(docker: Docker, name: string): string | undefined {
  const modem = docker.modem as { socketPath?: unknown; host?: unknown };
  // socketPath: a string, or docker-modem's function that finds the default socket.
  if (!modem.socketPath || modem.host || process.platform !== 'linux') return undefined;
  try {
    const top = path.join(os.tmpdir(), `mirrord-${process.getuid?.() ?? 0}`);
    mkdirSync(top, { mode: 0o700, recursive: true });
    const st = lstatSync(top);
    // Someone else's directory (or a symlink) in a shared /tmp: not ours to trust.
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) return undefined;
    const dir = path.join(top, 'shared', name, 'sock');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o777);
    // What a previous agent of this name left (it was killed): the new one starts clean.
    for (const f of ['agent.sock', 'agent.sock.leaving']) rmSync(path.join(dir, f), { force: true });
    return dir;
  } catch {
    return undefined;
  }
}

async function createShared(
  docker: Docker,
  target: { id: string },
  image: string,
  key: string,
  opts: AgentStartOptions,
): Promise<Docker.ContainerInfo | undefined> {
  const agentId = randomBytes(6).toString('hex');
  const name = `mirrord-agent-shared-${target.id.slice(0, 12)}-${key.slice(0, 8)}`;
  const hostDir = hostSocketDir(docker, name);
  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      Image: image,
      name,
      Env: [
        'MIRRORD_AGENT_MODE=shared',
        'MIRRORD_AGENT_TARGET_PID=1',
        `MIRRORD_AGENT_LOG=${opts.logLevel}`,
        `MIRRORD_AGENT_SESSION=${agentId}`,
        `MIRRORD_AGENT_TTL=${opts.ttlSeconds ?? 1}`,
        ...agentKeyEnv(opts),
        ...(hostDir ? [`MIRRORD_AGENT_HOST_SOCKET=${HOST_SOCKET_MOUNT}/agent.sock`] : []),
      ],
      Labels: {
        ...sessionLabels('true', agentId, target.id),
        [LABEL_OWNER]: SHARED_OWNER,
        [LABEL_SHARED]: key,
        ...(hostDir ? { [LABEL_HOST_SOCKET]: path.join(hostDir, 'agent.sock') } : {}),
      },
      HostConfig: {
        ...(hostDir ? { Binds: [`${hostDir}:${HOST_SOCKET_MOUNT}`] } : {}),
        NetworkMode: `container:${target.id}`,
        PidMode: `container:${target.id}`,
        CapDrop: ['ALL'],
        CapAdd: agentCapabilities(opts),
        SecurityOpt: ['no-new-privileges'],
        AutoRemove: true,
        LogConfig: { Type: 'none', Config: {} },
      },
    });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    // Another session is starting the same agent right now: join it.
    if (status === 409) return undefined;
    if (status === 404) {
      throw new MirrordError(`agent image ${image} is not on the Docker engine`, ExitCode.Agent, 'Remove agent.image to build it locally, or load that image');
    }
    if (status === undefined) throw dockerUnreachable(err);
    throw new MirrordError(`cannot create the shared agent container: ${(err as Error).message}`, ExitCode.Agent, 'See the Docker engine log', { cause: err });
  }
  try {
    await container.start();
  } catch (err) {
    await container.remove({ force: true }).catch(() => undefined);
    const msg = (err as { json?: { message?: string } }).json?.message ?? (err as Error).message;
    throw new MirrordError(`the shared agent container did not start: ${msg}`, ExitCode.Agent, 'Check that the target is still running (docker ps)', {
      cause: err,
    });
  }
  opts.log.debug(`started shared agent ${name} (${agentId})`);
  return (await findShared(docker, target.id, key)) ?? undefined;
}

/** The session's link: `docker exec` of the relay, its stdout demultiplexed from its stderr. */
async function joinLink(
  docker: Docker,
  agent: Docker.ContainerInfo,
  opts: Pick<AgentStartOptions, 'token' | 'session' | 'logLevel' | 'log'>,
): Promise<{ link: Duplex; raw: Duplex; tail: () => string[] }> {
  const exec = await docker.getContainer(agent.Id).exec({
    Cmd: ['node', '/opt/mirrord/agent.mjs'],
    Env: ['MIRRORD_AGENT_MODE=join', `MIRRORD_AGENT_TOKEN=${opts.token}`, `MIRRORD_AGENT_SESSION=${opts.session}`, `MIRRORD_AGENT_LOG=${opts.logLevel}`],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const raw = (await exec.start({ hijack: true, stdin: true })) as unknown as Duplex;
  const stdout = new PassThrough({ highWaterMark: LINK_BUFFER_BYTES });
  const stderr = new PassThrough();
  demuxAttach(raw, stdout, stderr);
  raw.on('end', () => {
    stdout.end();
    stderr.end();
  });
  raw.on('error', (err) => stdout.destroy(err));
  stdout.on('error', () => undefined);
  const lines: string[] = [];
  let joined!: () => void;
  const connected = new Promise<void>((resolve) => (joined = resolve));
  stderr.setEncoding('utf8').on('data', (t: string) => {
    for (const l of t.split('\n').filter(Boolean)) {
      if (l === AP_JOINED_LINE) joined();
      lines.push(l);
      if (lines.length > 20) lines.shift();
      opts.log.debug(`shared agent: ${l}`);
    }
  });
  const link = joinStreams(stdout, raw);
  // The relay reached the agent, or it ended first (the agent is leaving, or gone).
  const ended = new Promise<'ended'>((resolve) => {
    raw.once('close', () => resolve('ended'));
    raw.once('end', () => resolve('ended'));
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), JOIN_TIMEOUT_MS)));
  const outcome = await Promise.race([connected.then(() => 'joined' as const), ended, late]);
  clearTimeout(timer);
  if (outcome !== 'joined') {
    raw.destroy();
    throw new Error(outcome === 'late' ? `the shared agent did not take the session within ${JOIN_TIMEOUT_MS / 1000} s` : 'the shared agent is leaving');
  }
  return { link, raw, tail: () => lines.slice() };
}

/**
 * The warm join: straight to the shared agent's host socket, the same join line the relay sends.
 * Undefined when there is none we may use (another user's agent, a remote engine, an agent that
 * did not open it): the caller goes through `docker exec`. `fresh`: the agent was just started and
 * may not listen yet.
 */
async function directLink(
  agent: Docker.ContainerInfo,
  opts: Pick<AgentStartOptions, 'token' | 'session' | 'log'>,
  fresh: boolean,
): Promise<{ link: Duplex; raw: Duplex; tail: () => string[] } | undefined> {
  const sock = agent.Labels[LABEL_HOST_SOCKET];
  if (!sock) return undefined;
  const deadline = Date.now() + (fresh ? JOIN_TIMEOUT_MS : 0);
  for (;;) {
    if (existsSync(`${sock}.leaving`)) throw new Error('the shared agent is leaving');
    try {
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(sock, () => resolve(s));
        s.once('error', reject);
      });
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      socket.setNoDelay?.(true);
      socket.write(`${JSON.stringify({ session: opts.session, token: opts.token })}\n`);
      opts.log.debug(`joined the shared agent on its host socket ${sock}`);
      return { link: socket, raw: socket, tail: () => [] };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const starting = code === 'ENOENT' || code === 'ECONNREFUSED';
      if (!starting || Date.now() > deadline) {
        opts.log.debug(`host socket ${sock} not usable (${code ?? (err as Error).message}): joining through docker exec`);
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 30));
    }
  }
}

/**
 * `image`: the agent image's tag, which may not be on the engine yet; `ensure` makes sure it is (built
 * if need be), and runs only before a container is made from it: a session that joins a live agent
 * of that image never waits for it.
 */
export async function startSharedAgent(
  docker: Docker,
  target: { id: string; name: string },
  image: string,
  opts: AgentStartOptions,
  ensure: () => Promise<unknown> = () => Promise.resolve(),
): Promise<AgentHandle> {
  const key = sharedKey(image, !!opts.fsWrite, agentKeyEnv(opts));
  let agent: Docker.ContainerInfo | undefined;
  let joinedLink: Awaited<ReturnType<typeof joinLink>> | undefined;
  let lastError: Error | undefined;
  // A found agent may be leaving (its ttl ran out): then a new one is started, under the same name
  // once the old container is gone.
  for (let i = 0; !joinedLink && i < 50; i++) {
    try {
      agent = await findShared(docker, target.id, key);
    } catch (err) {
      throw dockerUnreachable(err);
    }
    let fresh = false;
    if (!agent) {
      await ensure();
      opts.progress.update(`starting the shared agent next to docker/${target.name}`);
      agent = await createShared(docker, target, image, key, opts);
      fresh = true;
    }
    if (!agent) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    opts.log.debug(`joining shared agent ${agent.Names[0]} for session ${opts.session}`);
    try {
      joinedLink = (await directLink(agent, opts, fresh)) ?? (await joinLink(docker, agent, opts));
    } catch (err) {
      lastError = err as Error;
      opts.log.debug(`could not join ${agent.Names[0]}: ${lastError.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (!agent || !joinedLink) {
    throw new MirrordError(
      `no shared agent could be started or joined next to docker/${target.name}${lastError ? ` (${lastError.message})` : ''}`,
      ExitCode.Agent,
      "Run with MIRRORD_LOG=debug; agent.shared: false starts an agent of the session's own",
    );
  }
  const agentId = agent.Labels[LABEL_SESSION]!;
  const { link, raw, tail } = joinedLink;
  let guard: Promise<void> | undefined;
  let healing: Promise<void> | undefined;
  return {
    link,
    description: `shared agent container ${agent.Id.slice(0, 12)} on docker/${target.name}`,
    startGuard(agentPid: number) {
      guard ??= ensure()
        .then(() => startSharedGuard(docker, target.id, image, agentPid, agentId, opts))
        .catch((err: Error) => {
          opts.log.warn(`no guard for the shared agent (${err.message}); if the agent is killed, its rules stay until the next session`);
        });
      return guard;
    },
    heal() {
      // Only the sweep: the agent's chain is other sessions' too, and goes only if the agent is gone.
      healing ??= ensure()
        .then(() => runHealer(docker, target.id, image, opts, ''))
        .catch((err: Error) => {
          opts.log.warn(`could not check the target's rules after losing the agent (${err.message}); the next session removes them`);
        });
      return healing;
    },
    async stop() {
      // The relay ends with its stdin; the agent serves the other sessions, or leaves after agent.ttl.
      link.end();
      await new Promise<void>((resolve) => {
        if (raw.destroyed) return resolve();
        raw.once('close', () => resolve());
        setTimeout(resolve, 3000).unref();
      });
      raw.destroy();
    },
    recentLogs: tail,
  };
}

/** One guard per shared agent; the session that finds it already there has nothing to do. */
async function startSharedGuard(docker: Docker, targetId: string, image: string, agentPid: number, agentId: string, opts: AgentStartOptions): Promise<void> {
  try {
    const guard = await docker.createContainer({
      Image: image,
      name: `mirrord-guard-${agentId}`,
      Env: [
        'MIRRORD_AGENT_MODE=guard',
        `MIRRORD_GUARD_PID=${agentPid}`,
        `MIRRORD_AGENT_SESSION=${agentId}`,
        `MIRRORD_AGENT_LOG=${opts.logLevel}`,
        ...agentKeyEnv(opts),
      ],
      Labels: { ...sessionLabels('guard', agentId, targetId), [LABEL_OWNER]: SHARED_OWNER },
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
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 409) return;
    throw err;
  }
}

/** The running agents of the engine (shared or not), optionally of one target: what `mirrord status` reports on. */
export async function listAgents(docker: Docker, targetId?: string): Promise<Docker.ContainerInfo[]> {
  const label = [`${LABEL_AGENT}=true`, ...(targetId ? [`${LABEL_TARGET}=${targetId}`] : [])];
  return docker.listContainers({ filters: { label, status: ['running'] } });
}

/** A link to a shared agent for a short visit (`mirrord status`), through the same relay a session uses. */
export async function visitSharedAgent(
  docker: Docker,
  agent: Docker.ContainerInfo,
  o: { session: string; token: string; logLevel: string; log: AgentStartOptions['log'] },
): Promise<{ link: Duplex; close(): Promise<void> }> {
  const { link, raw } = (await directLink(agent, o, false)) ?? (await joinLink(docker, agent, o));
  return {
    link,
    async close() {
      link.end();
      await new Promise<void>((resolve) => {
        if (raw.destroyed) return resolve();
        raw.once('close', () => resolve());
        setTimeout(resolve, 3000).unref();
      });
      raw.destroy();
    },
  };
}
