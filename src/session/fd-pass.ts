/**
 * The fast path's session side (docs/fast-path.md): the private directory the agent's socket helper
 * listens in, the test connection that decides whether a session uses it, and the variables that
 * tell the layer. Every "no" here only means the stream: it is logged, never an error.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import type { MirrordConfig } from '../config/schema.js';
import type { Logger } from '../../common/log.js';
import { recordFastPath } from '../../common/data-path-record.js';
import { isAlive, ownerGone } from '../platforms/owner.js';
import { LABEL_OWNER, LABEL_SESSION } from '../platforms/docker/labels.js';
import { packageRoot } from '../package-root.js';
import type { TargetSpec } from '../target.js';

/** The helper's socket, agent/src/fdpass/helper.ts's FDPASS_SOCKET_NAME. */
const SOCKET_NAME = 'h.sock';
/** sockaddr_un's sun_path, with its terminating zero. */
const SUN_PATH_MAX = 107;

export interface FdPass {
  /** What the agent mounts at its helper's directory: a 0777 child of the user's 0700 directory,
   * or (container mode) a named volume. */
  readonly hostDir: string;
  /** The helper's socket where the program sees it. */
  readonly socketPath: string;
  /** Container mode: the Binds entry that gives the user's container the helper's socket. */
  readonly programBind?: string;
  readonly token: string;
  /** Set by probe(): the session's connects take sockets from the helper. */
  enabled: boolean;
  /** The test connection; logs which data path the session uses. */
  probe(log: Logger): Promise<boolean>;
  /** MIRRORD_FDPASS_* for the layer, when enabled. */
  layerEnv(): Record<string, string>;
  remove(): void | Promise<void>;
}

/** `agent.fd_passing`, with MIRRORD_AGENT_FD_PASSING (auto | off) over it. */
export function fdPassingSetting(agent: Pick<MirrordConfig['agent'], 'fd_passing'>, env: NodeJS.ProcessEnv = process.env): 'auto' | 'off' {
  const v = env.MIRRORD_AGENT_FD_PASSING?.trim().toLowerCase();
  if (v === 'off' || v === 'auto') return v;
  return agent.fd_passing ?? 'auto';
}

/** Why the session cannot try the fast path at all, or undefined when it may. `env`: whose DOCKER_HOST
 * counts ({} for container mode, which works on any engine). */
export function fdPassUnavailable(setting: 'auto' | 'off', target: TargetSpec, shared: boolean, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (setting === 'off') return 'agent.fd_passing is off';
  if (process.platform !== 'linux') return 'the fast path needs Linux';
  if (target.kind !== 'docker') return 'the target is not a Docker container';
  if (shared) return 'agent.shared serves several sessions from one agent';
  // A remote engine would only make an empty directory for the mount on its own machine.
  if (env.DOCKER_HOST && !env.DOCKER_HOST.startsWith('unix://')) return `the Docker engine is remote (DOCKER_HOST=${env.DOCKER_HOST})`;
  return undefined;
}

/** A short base for the directory: the socket path must fit in sun_path. */
function baseDir(): string {
  const tmp = os.tmpdir();
  return Buffer.byteLength(path.join(tmp, 'mirrord-fd-XXXXXX', 's', SOCKET_NAME)) <= SUN_PATH_MAX ? tmp : '/tmp';
}

/** Directories of sessions whose CLI died without its teardown (SIGKILL): their owner file names a dead pid. */
function removeStale(base: string, log: Logger): void {
  let names: string[];
  try {
    names = fs.readdirSync(base).filter((n) => n.startsWith('mirrord-fd-'));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = path.join(base, name);
    try {
      if (fs.statSync(dir).uid !== process.getuid?.()) continue;
      const pid = Number(fs.readFileSync(path.join(dir, 'owner'), 'utf8'));
      if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      log.debug(`removed ${dir}, left by pid ${pid}`);
    } catch {
      // not ours, or another session removes it right now
    }
  }
}

export function createFdPass(log: Logger): FdPass | undefined {
  let dir: string;
  const base = baseDir();
  removeStale(base, log);
  try {
    dir = fs.mkdtempSync(path.join(base, 'mirrord-fd-'));
    fs.chmodSync(dir, 0o700);
    fs.writeFileSync(path.join(dir, 'owner'), String(process.pid));
    // The agent may run as a root without capabilities (or a remapped one): it cannot enter the
    // user's 0700 directory, only this child, which nobody else can reach through the parent.
    const hostDir = path.join(dir, 's');
    fs.mkdirSync(hostDir);
    fs.chmodSync(hostDir, 0o777);
  } catch (err) {
    log.info(`data path: stream (cannot create the socket helper's directory: ${(err as Error).message})`);
    return undefined;
  }
  const hostDir = path.join(dir, 's');
  const socketPath = path.join(hostDir, SOCKET_NAME);
  const token = randomBytes(24).toString('base64url');
  const fp: FdPass = {
    hostDir,
    socketPath,
    token,
    enabled: false,
    async probe(plog) {
      const why = await testConnection(socketPath, token);
      fp.enabled = why === undefined;
      plog.info(fp.enabled ? 'data path: fast (sockets made in the target, passed to the program)' : `data path: stream (${why})`);
      return fp.enabled;
    },
    layerEnv(): Record<string, string> {
      return fp.enabled ? { MIRRORD_FDPASS_SOCK: socketPath, MIRRORD_FDPASS_TOKEN: token } : {};
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return fp;
}

function ownBootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** undefined when the helper answers the token with a socket on this very kernel; else why not. */
async function testConnection(socketPath: string, token: string): Promise<string | undefined> {
  const probe = path.join(packageRoot(), 'layer/build/mirrord-fd-probe');
  const out = await new Promise<string>((resolve) => {
    execFile(probe, [socketPath], { env: { MIRRORD_FDPASS_TOKEN: token }, timeout: 5_000 }, (err, stdout) => {
      resolve(stdout.trim() || (err ? `the test connection failed: ${err.message}` : 'no answer'));
    });
  });
  const m = /^ok (\S+)$/.exec(out);
  if (!m) return out.startsWith('connect to the socket helper') ? `no socket helper reachable: ${out}` : out;
  const own = ownBootId();
  if (!own || own !== m[1]) return `the Docker engine runs on another kernel (boot id ${m[1]}, here ${own ?? 'unknown'})`;
  return undefined;
}

/** Where the agent and (container mode) the user's container see the helper's directory. */
export const FDPASS_MOUNT = '/run/mirrord-fd';
const LABEL_FDPASS = 'dev.mirrord.fdpass';

/**
 * Container mode (docs/fast-path.md): the user's container, its sidecar and the agent run on one
 * engine, so on one kernel even with Docker Desktop or a remote DOCKER_HOST; a named volume carries
 * the helper's socket between them. No probe: the CLI may not share that kernel, and each process's
 * first HELLO is its test (a refusal sends that process to the stream).
 */
export async function createFdVolume(docker: Docker, session: string, log: Logger): Promise<FdPass | undefined> {
  await removeStaleVolumes(docker, log);
  const name = `mirrord-fd-${session}`;
  try {
    await docker.createVolume({ Name: name, Labels: { [LABEL_FDPASS]: 'true', [LABEL_SESSION]: session, [LABEL_OWNER]: `${os.hostname()}:${process.pid}` } });
  } catch (err) {
    log.info(`data path: stream (cannot create the socket helper's volume: ${(err as Error).message})`);
    return undefined;
  }
  const token = randomBytes(24).toString('base64url');
  const socketPath = path.posix.join(FDPASS_MOUNT, SOCKET_NAME);
  const fp: FdPass = {
    hostDir: name,
    socketPath,
    programBind: `${name}:${FDPASS_MOUNT}`,
    token,
    enabled: true,
    probe(plog) {
      plog.info('data path: fast (container mode: sockets made in the target, over a volume shared with the agent)');
      recordFastPath();
      return Promise.resolve(true);
    },
    layerEnv: () => ({ MIRRORD_FDPASS_SOCK: socketPath, MIRRORD_FDPASS_TOKEN: token }),
    async remove() {
      await removeVolume(docker, name, log);
    },
  };
  return fp;
}

/** The agent and the user's container may still be on their way out: a volume in use is retried. */
async function removeVolume(docker: Docker, name: string, log: Logger, tries = 20): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      await docker.getVolume(name).remove();
      return;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) return;
      if (status !== 409 || i === tries - 1) {
        log.debug(`cannot remove volume ${name}: ${(err as Error).message}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function removeStaleVolumes(docker: Docker, log: Logger): Promise<void> {
  try {
    const { Volumes } = await docker.listVolumes({ filters: { label: [LABEL_FDPASS] } });
    for (const v of Volumes ?? []) if (ownerGone(v.Labels?.[LABEL_OWNER])) await removeVolume(docker, v.Name, log, 1);
  } catch (err) {
    log.debug(`fd-pass volumes: ${(err as Error).message}`);
  }
}
