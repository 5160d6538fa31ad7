import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { mergeEnv } from '../env/merge.js';
import { packageRoot } from '../package-root.js';
import { checkProgram } from '../program-check.js';
import { findProgram } from '../program-path.js';
import type { Progress } from '../progress.js';
import type { InProcess } from '../session/in-process.js';
import type { Session } from '../session/session.js';

/**
 * The local side of `mirrord exec`: the user's program as a child of this process, with the layer
 * preloaded and the target's environment merged into ours.
 */

export function layerPath(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.MIRRORD_LAYER_PATH || path.join(packageRoot(), 'layer/build/libmirrord_layer.so');
  if (!existsSync(p)) {
    throw new MirrordError(`the layer library ${p} is missing`, ExitCode.Internal, 'Run `npm run build` in the mirrord checkout');
  }
  return p;
}

/** Checks made before any session starts: the program exists, the layer is there, and a warning when the loader will not preload it. */
export function prepareProgram(cmd: string): { program: string; layer: string } {
  const program = findProgram(cmd);
  const layer = layerPath();
  warnUnreachable(cmd, program);
  return { program, layer };
}

/** How a supervisor (mirrord up) runs the program instead of with our own stdio and signals. */
export interface Supervised {
  stdout: Writable;
  stderr: Writable;
  /** The program runs under mirrord-init holding this loopback port: when it closes, the program ends. */
  lifelinePort?: number;
  /** Called once the program runs, with what stops it. */
  onStart(stop: (signal: NodeJS.Signals) => void): void;
}

/** Runs `program` in the session's context; resolves to its exit status. */
export async function runProcess(
  session: Session<InProcess>,
  p: { program: string; layer: string; argv0: string; args: string[] },
  log: Logger,
  progress: Progress,
  supervised?: Supervised,
): Promise<number> {
  const remote = await session.host.remoteEnv();
  const merged = mergeEnv(process.env, remote, session.features.env);
  const { fromRemote } = merged;
  let { env } = merged;
  if (session.features.env.load_from_process) {
    // The program starts with the local environment; its layer applies the merged one before main().
    const local = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
    const changes = [
      ...Object.entries(env)
        .filter(([k, v]) => local[k] !== v)
        .map(([name, value]) => ({ name, value })),
      ...Object.keys(local)
        .filter((k) => !(k in env))
        .map((name) => ({ name })),
    ];
    session.host.intproxy.programEnv.set(changes);
    env = { ...local, MIRRORD_ENV_FROM_PROCESS: '1' };
    log.debug(`feature.env.load_from_process: ${changes.length} change(s) for the program's layer to apply`);
  }
  // feature.hostname: the layer reports this name from gethostname/uname (the target's HOSTNAME, as its runtime set it).
  if (session.features.hostname && remote.HOSTNAME) env.MIRRORD_HOSTNAME = remote.HOSTNAME;
  // feature.network.outgoing.unix_streams: the layer asks the intproxy about unix stream connects.
  if (session.features.outgoing.unix_streams?.length) env.MIRRORD_UNIX_STREAMS = '1';
  log.debug(`environment from ${session.targetDisplay}: ${fromRemote.join(', ') || '(none)'}`);
  progress.succeed(`mirrord: running ${p.argv0} in the context of ${session.targetDisplay}`);
  env.LD_PRELOAD = [p.layer, process.env.LD_PRELOAD].filter(Boolean).join(':');
  // Remote files: the layer learns which paths it may keep local without asking (src/fs/rules.ts).
  Object.assign(env, await session.layerEnv());
  session.onLinkLost((reason) => {
    process.stderr.write(`mirrord: lost the link to the agent (${reason}); remote connections and look-ups now fail\n`);
  });
  const status = supervised ? await superviseProgram(p, env, supervised) : await runProgram(p.program, p.argv0, p.args, env);
  // A helper still copying an exec'd program's output to a remote file gets a moment to finish.
  await session.host.intproxy.files.idle(3000);
  return status;
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

/** mirrord-init, the sidecar's PID 1, also serves as a lifeline on the host (built with the sidecar). */
export function initPath(): string | undefined {
  const p = path.join(packageRoot(), 'sidecar/build/mirrord-init');
  return existsSync(p) ? p : undefined;
}

/** The program with piped output, under mirrord-init when a lifeline is given; signals are the supervisor's. */
function superviseProgram(p: { program: string; argv0: string; args: string[] }, env: Record<string, string>, s: Supervised): Promise<number> {
  const init = s.lifelinePort ? initPath() : undefined;
  const [file, args] = init ? [init, [String(s.lifelinePort), p.program, ...p.args]] : [p.program, p.args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    child.stdout.pipe(s.stdout, { end: false });
    child.stderr.pipe(s.stderr, { end: false });
    s.onStart((sig) => void child.kill(sig));
    child.once('error', (err) =>
      reject(
        new MirrordError(`cannot start ${p.argv0}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, ExitCode.Program, 'Check the command', {
          cause: err,
        }),
      ),
    );
    child.once('exit', (code, signal) => {
      const status = signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 0);
      // Its last output may still be in the pipes; a grandchild holding them open must not hold us.
      const done = () => {
        clearTimeout(grace);
        child.stdout.destroy();
        child.stderr.destroy();
        resolve(status);
      };
      const grace = setTimeout(done, 500);
      child.once('close', done);
    });
  });
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
      reject(
        new MirrordError(`cannot start ${argv0}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, ExitCode.Program, 'Check the command', { cause: err }),
      );
    });
    child.once('exit', (code, signal) => {
      done();
      resolve(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 0));
    });
  });
}
