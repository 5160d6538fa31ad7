import { closeSync, writeSync } from 'node:fs';
import { flagOverrides } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { DEFAULT_MOUNTS_MAX_SIZE, type MirrordConfig, type ResolvedFeatures } from '../config/schema.js';
import { withLocalCopies } from '../fs/mounts.js';
import type { AgentConnection } from '../agent-link/connection.js';
import { mergeEnv } from '../env/merge.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { quietProgress } from '../progress.js';
import { sessionSettings } from '../session/from-config.js';
import { inProcess } from '../session/in-process.js';
import { startSession } from '../session/session.js';
import { copyMounts } from './mounts.js';
import { DEFAULT_SKIP, preloadMode, type DevcontainerFlags, devcontainerTarget } from './options.js';
import { writeLockedSessionFile } from './session-file.js';
import { ensureDir, statePaths, writeDaemonInfo } from './state.js';

/**
 * The daemon's session settings: the one shared sessionSettings() of the config (so internal_proxy,
 * external_proxy, use_proxy, key and the rest apply as for exec), the dev container's own programs
 * and --skip added to skip_processes.
 */
export function daemonSessionSettings(config: MirrordConfig, flags: Pick<DevcontainerFlags, 'skip'>): ReturnType<typeof sessionSettings> {
  const settings = sessionSettings(config);
  const skipProcesses = [...DEFAULT_SKIP, ...(settings.skipProcesses ?? []), ...(flags.skip ? flags.skip.split(';').filter(Boolean) : [])];
  return { ...settings, skipProcesses };
}

/** What the daemon tells `start` on descriptor 3, one JSON line, once. */
export type DaemonReport = { ok: true; pid: number; target: string; warning?: string } | { ok: false; message: string };

/** The descriptor `start` reads the report from. */
export const REPORT_FD = 3;

function report(r: DaemonReport): void {
  try {
    writeSync(REPORT_FD, JSON.stringify(r) + '\n');
    closeSync(REPORT_FD);
  } catch {
    // started by hand, without the pipe: the log says the same
  }
}

/**
 * The session daemon of a dev container (`mirrord devcontainer daemon`, started by `start`): the
 * intproxy and the agent link in this process, as with `mirrord exec`, and the session file that
 * every process's layer reads, locked for as long as this process lives. It ends when the link to
 * the agent drops (the agent then leaves too), on SIGTERM (`stop`), or with the container.
 * `cliExe`: this executable when it is the single executable, so the layer leaves the CLI alone.
 */
export async function runDaemon(flags: DevcontainerFlags, log: Logger, cliExe: string): Promise<number> {
  const paths = statePaths();
  let session: Awaited<ReturnType<typeof startSession>> | undefined;
  try {
    preloadMode(flags);
    const { config, raw } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
    const target = devcontainerTarget(config, raw, flags.namespace);
    const settings = daemonSessionSettings(config, flags);
    const mounts = config.container?.mounts ?? { sync: true, max_size: DEFAULT_MOUNTS_MAX_SIZE };
    let warning: string | undefined;
    // Before the intproxy starts: once copied, the layer reads the copies, as container mode's does.
    const beforeIntproxy = async (agent: AgentConnection, features: ResolvedFeatures): Promise<ResolvedFeatures> => {
      try {
        const c = await copyMounts(agent, { maxBytes: mounts.max_size });
        log.info(`mounted files: ${c.roots.join(', ') || 'none'} (${c.entries} entries, ${c.bytes} bytes) copied`);
        return { ...features, fs: withLocalCopies(features.fs, c.roots) };
      } catch (err) {
        warning = `the target's mounted files were not copied (${(err as Error).message}); the layer reads them from the target`;
        log.warn(warning);
        return features;
      }
    };
    const sync = mounts.sync && target.kind !== 'targetless';
    const intproxy = inProcess(sync ? { beforeIntproxy } : {});
    session = await startSession({ target, ...settings, intproxy, log, progress: quietProgress });
    // Only what the rules let through, without the dev container's own variables: the layer applies it over each process's.
    const { env } = mergeEnv({}, await session.host.remoteEnv(), session.features.env);
    ensureDir(paths);
    const held = writeLockedSessionFile(paths.session, { settings: await session.layerEnv(), cliExe, env });
    writeDaemonInfo(paths, { pid: process.pid, target: session.targetDisplay, started: new Date().toISOString(), preload: preloadMode(flags) });
    const s = session;
    let ending = false;
    const end = async (code: number, why: string) => {
      if (ending) return;
      ending = true;
      log.warn(`session ends: ${why}`);
      held.release();
      await s.close().catch(() => undefined);
      process.exit(code);
    };
    session.onLinkLost((reason) => void end(1, `lost the link to the agent (${reason})`));
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void end(0, sig));
    process.stderr.write(
      `mirrord devcontainer: ${new Date().toISOString()} session ${session.id} live on ${session.targetDisplay}, intproxy ${session.host.layerAddr}\n`,
    );
    report({ ok: true, pid: process.pid, target: session.targetDisplay, warning });
    // The intproxy's listener and the agent link keep this process alive from here on.
    return await new Promise<number>(() => undefined);
  } catch (err) {
    await session?.close().catch(() => undefined);
    const message = err instanceof MirrordError ? err.oneLine().replace(/^mirrord: /, '') : `internal error: ${(err as Error).stack ?? String(err)}`;
    process.stderr.write(`mirrord devcontainer: ${message}\n`);
    report({ ok: false, message });
    return err instanceof MirrordError ? err.code : ExitCode.Internal;
  }
}
