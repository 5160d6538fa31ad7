import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/**
 * The user's own `docker compose`, driven: the same files, project directory, project name and
 * profiles go to every call, so the rewritten file is read as the user's would be.
 */
export interface ComposeProject {
  files: string[];
  projectDirectory: string;
  projectName?: string;
  profiles: string[];
}

export function composeArgs(p: ComposeProject, files: string[], ...rest: string[]): string[] {
  return [
    'compose',
    ...files.flatMap((f) => ['-f', f]),
    '--project-directory',
    p.projectDirectory,
    ...(p.projectName ? ['-p', p.projectName] : []),
    ...p.profiles.flatMap((x) => ['--profile', x]),
    ...rest,
  ];
}

const ENV = { ...process.env, DOCKER_CLI_HINTS: 'false' };

/** `docker compose config`: the project normalised by Compose itself (interpolation, .env, extends, profiles), as YAML. */
export function composeConfig(p: ComposeProject): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('docker', composeArgs(p, p.files, 'config'), { encoding: 'utf8', env: ENV, maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      reject(
        new MirrordError(
          `docker compose config failed: ${firstLines(stderr) || err.message}`,
          ExitCode.Config,
          `Fix the compose file (docker compose ${p.files.map((f) => `-f ${f}`).join(' ')} config shows the same)`,
        ),
      );
    });
  });
}

/**
 * One `docker compose` step that must succeed (create, stop, down). Its progress goes to stderr on
 * a terminal; otherwise it is kept and shown only when the step fails.
 */
export function composeStep(args: string[], log: Logger, opts: { tty: boolean }): Promise<void> {
  log.debug(`docker ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { env: ENV, stdio: ['ignore', opts.tty ? 'inherit' : 'pipe', opts.tty ? 'inherit' : 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', (err) =>
      reject(new MirrordError(`cannot run docker: ${err.message}`, ExitCode.Platform, 'Install the Docker CLI and its compose plugin')),
    );
    const started = Date.now();
    child.once('exit', (code, signal) => {
      log.debug(`docker compose ${args.find((a) => STEPS.has(a)) ?? ''}: ${signal ?? `exit ${code}`} after ${Date.now() - started} ms`);
      if (code === 0) return resolve();
      log.debug(out);
      reject(
        new MirrordError(
          `docker compose ${args.find((a) => STEPS.has(a)) ?? ''} failed (${signal ?? `exit ${code}`}): ${firstLines(lastLines(out)) || 'no output'}`,
          ExitCode.Platform,
          'Run the same docker compose command by hand to see why; MIRRORD_LOG=debug shows it',
        ),
      );
    });
  });
}

const STEPS = new Set(['up', 'create', 'stop', 'down', 'build', 'kill']);

/** The attached `docker compose up`, in its own process group so that a Ctrl-C reaches mirrord, which stops Compose its own way. */
export function composeAttached(args: string[], log: Logger): ChildProcess {
  log.debug(`docker ${args.join(' ')}`);
  return spawn('docker', args, { env: ENV, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
}

function firstLines(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, 3)
    .join(' | ');
}

function lastLines(s: string): string {
  return s.split('\n').filter(Boolean).slice(-3).join('\n');
}
