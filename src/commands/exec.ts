import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { flagOverrides, type ExecFlags } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { resolveFeatures, type MirrordConfig } from '../config/schema.js';
import { mergeEnv } from '../env/merge.js';
import { layerHintEnv } from '../fs/rules.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { packageRoot } from '../package-root.js';
import { createProgress, type Progress } from '../progress.js';
import { checkProgram } from '../program-check.js';
import { findProgram } from '../program-path.js';
import { startSession, type Session } from '../session/session.js';
import { parseTarget, type TargetSpec } from '../target.js';

export type { ExecFlags };
export { findProgram };


export function targetFrom(cfg: MirrordConfig, namespace?: string): TargetSpec {
  const t = cfg.target;
  const text = typeof t === 'string' ? t : t?.path;
  if (!text) {
    throw new MirrordError('no target given', ExitCode.Usage, 'Pass -t docker/NAME_OR_ID or set "target" in the config file');
  }
  return parseTarget(text, namespace ?? (typeof t === 'object' ? t.namespace : undefined));
}

export function layerPath(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.MIRRORD_LAYER_PATH || path.join(packageRoot(), 'layer/build/libmirrord_layer.so');
  if (!existsSync(p)) {
    throw new MirrordError(`the layer library ${p} is missing`, ExitCode.Internal, 'Run `npm run build` in the mirrord checkout');
  }
  return p;
}

export async function execCommand(argv: string[], flags: ExecFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new MirrordError('no command to run', ExitCode.Usage, 'Usage: mirrord exec -t TARGET -- CMD [ARGS...]');
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
  const target = targetFrom(config, flags.namespace);
  const program = findProgram(cmd);
  const layer = layerPath();
  const features = resolveFeatures(config);
  warnUnreachable(cmd, program);

  let session: Session | undefined;
  try {
    session = await startSession({ target, features, agent: config.agent, kube: { kubeconfig: config.kubeconfig, context: config.kube_context }, log, progress });
    const remote = await session.agent.request('env.get', {});
    const { env, fromRemote } = mergeEnv(process.env, remote.env, features.env);
    log.debug(`environment from ${session.targetDisplay}: ${fromRemote.join(', ') || '(none)'}`);
    progress.succeed(`mirrord: running ${cmd} in the context of ${session.targetDisplay}`);
    env.LD_PRELOAD = [layer, process.env.LD_PRELOAD].filter(Boolean).join(':');
    env.MIRRORD_LAYER_ADDR = session.intproxy.address;
    env.MIRRORD_SESSION = session.id;
    if (config.skip_processes?.length) env.MIRRORD_SKIP_PROCESSES = config.skip_processes.join(';');
    // Remote files: the layer learns which paths it may keep local without asking (src/fs/rules.ts).
    session.intproxy.files.exe = program;
    Object.assign(env, layerHintEnv(await session.intproxy.files.rules()));
    session.onLinkLost((reason) => {
      process.stderr.write(`mirrord: lost the link to the agent (${reason}); remote connections and look-ups now fail\n`);
    });
    const status = await runProgram(program, cmd, args, env);
    // A helper still copying an exec'd program's output to a remote file gets a moment to finish.
    await session.intproxy.files.idle(3000);
    return status;
  } catch (err) {
    progress.fail();
    throw err;
  } finally {
    await session?.close();
  }
}

/** One line on stderr when the loader will not preload the layer into the program. */
function warnUnreachable(cmd: string, program: string): void {
  const check = checkProgram(program);
  const what = check.resolved === program ? cmd : `${cmd} (run by ${check.resolved})`;
  if (check.static) {
    process.stderr.write(
      `mirrord: warning: ${what} is statically linked: LD_PRELOAD cannot intercept it, so its traffic, DNS and files stay local (its environment is still the target's)\n`,
    );
  } else if (check.setid) {
    process.stderr.write(`mirrord: warning: ${what} is set-user/group-ID: the loader ignores LD_PRELOAD for it, so it runs without interception\n`);
  }
}

/** Runs the program with our stdio; its exit code, or 128 + signal, becomes ours. */
function runProgram(program: string, argv0: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: 'inherit', env, argv0 });
    // Ctrl-C on a terminal already reaches the whole foreground group; a signal sent to us alone
    // (kill, a supervisor) is passed on so the program can shut down its own way.
    const forward = (sig: NodeJS.Signals) => {
      if (sig === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(sig);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    const done = () => signals.forEach((s) => process.off(s, forward));
    child.once('error', (err) => {
      done();
      reject(new MirrordError(`cannot start ${argv0}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, ExitCode.Program, 'Check the command', { cause: err }));
    });
    child.once('exit', (code, signal) => {
      done();
      resolve(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 0));
    });
  });
}
