import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { flagOverrides } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { layerPath } from '../local/process.js';
import { kubeconfigFromSecret } from './kubeconfig.js';
import type { DaemonReport } from './daemon.js';
import { daemonArgs, devcontainerTarget, preloadMode, type DevcontainerFlags } from './options.js';
import { disablePreload, enablePreload } from './preload.js';
import { clearStale, ensureDir, liveSession, readDaemonInfo, statePaths, type PreloadMode, type StatePaths } from './state.js';
import { sessionFileLive, takeLock } from './session-file.js';

type Print = (line: string) => void;

/** How to run this CLI again: the single executable alone, or Node with the script. */
export interface SelfCommand {
  file: string;
  args: string[];
}

/**
 * `mirrord devcontainer start`: idempotent; starts the daemon in the background and returns once
 * its session is live, with one line. A target that cannot be reached (or no target, or a bad
 * secret) is a warning and exit 0: the dev container must still start, with nothing preloaded.
 */
export async function startDevcontainer(flags: DevcontainerFlags, self: SelfCommand, print: Print, warn: Print): Promise<number> {
  const mode = preloadMode(flags);
  const paths = statePaths();
  let startLock: number;
  try {
    ensureDir(paths);
    startLock = openSync(paths.startLock, 'a');
  } catch (err) {
    // The feature's install.sh gives the directory to the remote user; anyone else cannot start a session there.
    warn(
      `mirrord: warning: cannot write ${paths.dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): run as the dev container's remote user, or set MIRRORD_DEVCONTAINER_DIR; the dev container runs without mirrord`,
    );
    return 0;
  }
  // One start at a time (the entrypoint's and postStartCommand's run together at a container's
  // first start): the second waits here, then finds the session live.
  try {
    takeLock(startLock, undefined, true);
    return await startLocked(flags, mode, paths, self, print, warn);
  } finally {
    closeSync(startLock);
  }
}

async function startLocked(flags: DevcontainerFlags, mode: PreloadMode, paths: StatePaths, self: SelfCommand, print: Print, warn: Print): Promise<number> {
  const live = liveSession(paths);
  if (live) {
    print(`mirrord: the session on ${live.target} is already live (daemon ${live.pid})`);
    return 0;
  }
  let timeoutMs: number;
  try {
    clearStale(paths);
    if (flags.kubeconfigSecret) flags = { ...flags, kubeconfig: kubeconfigFromSecret(flags.kubeconfigSecret, process.env, paths.kubeconfig) };
    // Checked here so that a config problem is the one line of start, not a line in the daemon's log.
    const { config, raw } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
    devcontainerTarget(config, raw, flags.namespace);
    timeoutMs = flags.timeout ? Number(flags.timeout) * 1000 : (config.agent.startup_timeout + 60) * 1000;
  } catch (err) {
    if (!(err instanceof MirrordError)) throw err;
    warn(`mirrord: warning: ${err.oneLine().replace(/^mirrord: /, '')}; the dev container runs without mirrord`);
    return 0;
  }
  const report = await spawnDaemon(self, flags, paths.log, timeoutMs);
  if (!report.ok) {
    warn(`mirrord: warning: ${report.message}; the dev container runs without mirrord (log: ${paths.log})`);
    return 0;
  }
  try {
    enablePreload(mode, layerPath());
  } catch (err) {
    warn(`mirrord: warning: the session is live but the layer could not be preloaded: ${(err as Error).message}`);
    return 0;
  }
  const reach = mode === 'all' ? 'every new process' : mode === 'shell' ? 'new login shells' : 'mirrord exec';
  print(`mirrord: session on ${report.target} live (daemon ${report.pid}); ${reach} runs in its context`);
  if (report.warning) warn(`mirrord: warning: ${report.warning}`);
  return 0;
}

function spawnDaemon(self: SelfCommand, flags: DevcontainerFlags, logFile: string, timeoutMs: number): Promise<DaemonReport> {
  const log = openSync(logFile, 'a');
  const child = spawn(self.file, [...self.args, ...daemonArgs(flags)], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    // The mark keeps the layer out of the daemon (and anything it starts), whatever /etc/ld.so.preload says.
    env: { ...process.env, MIRRORD_DEVCONTAINER_DAEMON: '1' },
  });
  closeSync(log);
  const pipe = child.stdio[3] as Readable;
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    const finish = (r: DaemonReport) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      pipe.destroy();
      child.unref();
      resolve(r);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ ok: false, message: `the session was not live after ${Math.round(timeoutMs / 1000)} s` });
    }, timeoutMs);
    pipe.setEncoding('utf8').on('data', (d: string) => {
      text += d;
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        try {
          finish(JSON.parse(text.slice(0, nl)) as DaemonReport);
        } catch {
          finish({ ok: false, message: 'the session daemon sent no report' });
        }
      }
    });
    child.once('error', (err) => finish({ ok: false, message: `cannot start the session daemon: ${err.message}` }));
    child.once('exit', (code) => finish({ ok: false, message: `the session daemon exited (${code})` }));
  });
}

/** `status`: one line; exit 0 when a session is live, 1 otherwise. */
export function devcontainerStatus(print: Print): number {
  const live = liveSession(statePaths());
  if (!live) {
    print('mirrord: no session is running');
    return 1;
  }
  print(`mirrord: session on ${live.target} live (daemon ${live.pid}, since ${live.started}, preload ${live.preload})`);
  return 0;
}

/** `stop`: ends the daemon (its agent leaves with the link) and takes the layer out; idempotent. */
export async function stopDevcontainer(print: Print): Promise<number> {
  const paths = statePaths();
  const info = readDaemonInfo(paths);
  const wasLive = sessionFileLive(paths.session);
  if (wasLive && info?.pid) {
    try {
      process.kill(info.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    for (let i = 0; i < 100 && sessionFileLive(paths.session); i++) await new Promise((r) => setTimeout(r, 100));
    if (sessionFileLive(paths.session)) {
      try {
        process.kill(info.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
  clearStale(paths);
  let layer: string | undefined;
  try {
    layer = layerPath();
  } catch {
    layer = undefined;
  }
  if (layer) {
    try {
      disablePreload(layer);
    } catch (err) {
      throw new MirrordError(
        `the session is stopped but the layer is still preloaded: ${(err as Error).message}`,
        ExitCode.Platform,
        'Remove it from /etc/ld.so.preload as root',
      );
    }
  }
  print(wasLive ? `mirrord: session on ${info?.target ?? '(unknown)'} stopped` : 'mirrord: no session was running');
  return 0;
}

/** `logs`: the daemon's log. */
export function devcontainerLogs(print: Print): number {
  const { log } = statePaths();
  if (!existsSync(log)) {
    print('mirrord: no session log yet');
    return 1;
  }
  print(readFileSync(log, 'utf8').replace(/\n$/, ''));
  return 0;
}
