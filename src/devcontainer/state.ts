import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { sessionFileLive } from './session-file.js';

/**
 * Where a dev container's session lives: /run/mirrord (MIRRORD_DEVCONTAINER_DIR for tests and
 * machines where /run is not writable). The feature's install.sh creates it, owned by the remote
 * user, so a non-root `mirrord devcontainer start` can write it.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MIRRORD_DEVCONTAINER_DIR || '/run/mirrord';
}

export interface StatePaths {
  dir: string;
  /** The session file the layer reads (layer/src/session_file.c's default path). */
  session: string;
  /** What `status` prints: the daemon's pid, target, start time. */
  daemon: string;
  /** The daemon's stdout and stderr (`logs`). */
  log: string;
  /** A kubeconfig decoded from a secret (mode 0600). */
  kubeconfig: string;
  /** Held by a running `start`, so that two starts never start two daemons. */
  startLock: string;
}

export function statePaths(dir: string = stateDir()): StatePaths {
  return {
    dir,
    session: path.join(dir, 'session'),
    daemon: path.join(dir, 'daemon.json'),
    log: path.join(dir, 'daemon.log'),
    kubeconfig: path.join(dir, 'kubeconfig'),
    startLock: path.join(dir, 'start.lock'),
  };
}

export interface DaemonInfo {
  pid: number;
  target: string;
  started: string;
  preload: PreloadMode;
}

export type PreloadMode = 'all' | 'shell' | 'none';

export function ensureDir(p: StatePaths): void {
  mkdirSync(p.dir, { recursive: true, mode: 0o755 });
}

export function writeDaemonInfo(p: StatePaths, info: DaemonInfo): void {
  writeFileSync(p.daemon, JSON.stringify(info) + '\n');
}

export function readDaemonInfo(p: StatePaths): DaemonInfo | undefined {
  try {
    return JSON.parse(readFileSync(p.daemon, 'utf8')) as DaemonInfo;
  } catch {
    return undefined;
  }
}

/** The running session, if any: its daemon info when the session file's lock is held. */
export function liveSession(p: StatePaths): DaemonInfo | undefined {
  if (!sessionFileLive(p.session)) return undefined;
  return readDaemonInfo(p) ?? { pid: 0, target: '(unknown)', started: '', preload: 'none' };
}

/** What a dead daemon left: the container restarted, or the daemon was killed. */
export function clearStale(p: StatePaths): void {
  if (sessionFileLive(p.session)) return;
  rmSync(p.session, { force: true });
  rmSync(p.daemon, { force: true });
}
