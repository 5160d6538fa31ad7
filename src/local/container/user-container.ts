/**
 * The user's container in container mode: created through the API (so mounted files can be put
 * into it before its program starts), run under mirrord-init (which ends it when the session's
 * sidecar goes away), attached, signalled and waited for like `docker run`.
 */
import type { Writable } from 'node:stream';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { attachContainer } from '../../platforms/docker/attach.js';
import { removeContainer } from '../../platforms/docker/remove.js';
import { INIT_IN_SIDECAR } from '../../../common/sidecar-contract.js';
import type { DockerRun } from './docker-run.js';

/** What the container would run without us: `docker run`'s rules for ENTRYPOINT, CMD and their overrides. */
export function commandLine(run: DockerRun, image: ImageConfig): string[] {
  const entrypoint = run.entrypoint ?? image.Entrypoint ?? [];
  // --entrypoint drops the image's CMD, as docker run does.
  const cmd = run.cmd.length ? run.cmd : run.entrypoint !== undefined ? [] : (image.Cmd ?? []);
  return [...entrypoint, ...cmd];
}

export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
}

/** The image's own entrypoint and command; a missing image is the user's to fix, said before any session starts. */
export async function imageConfig(docker: Docker, image: string): Promise<ImageConfig> {
  try {
    return ((await docker.getImage(image).inspect()) as { Config?: ImageConfig }).Config ?? {};
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) {
      throw new MirrordError(`image ${image} is not on the Docker engine`, ExitCode.Program, `Build or pull it first (docker pull ${image})`, { cause: err });
    }
    throw err;
  }
}

/** The same command under mirrord-init, tied to the sidecar's lifeline port. */
export function underInit(run: DockerRun, image: ImageConfig, options: Docker.ContainerCreateOptions, lifelinePort: number): Docker.ContainerCreateOptions {
  const argv = commandLine(run, image);
  if (argv.length === 0) {
    throw new MirrordError(`image ${run.image} has no ENTRYPOINT or CMD and none was given`, ExitCode.Usage, 'Give a command after the image');
  }
  return { ...options, Entrypoint: [INIT_IN_SIDECAR, String(lifelinePort), ...argv], Cmd: [] };
}

/**
 * Created, prepared (`beforeStart`: the mounted files), attached, started, waited for: the exit
 * code is the container's (128 + signal included). The container is removed if it never starts.
 */
export async function runUserContainer(
  docker: Docker,
  run: DockerRun,
  options: Docker.ContainerCreateOptions,
  restore: Array<() => void>,
  beforeStart: (c: Docker.Container) => Promise<void>,
  log: Logger,
  supervised?: { stdout: Writable; stderr: Writable; onStart(stop: (signal: NodeJS.Signals) => void): void },
): Promise<number> {
  const user = await docker.createContainer(options).catch((err: unknown) => {
    const m = /does not match the specified platform: wanted ([^,]+), actual: (\S+)/.exec((err as Error).message);
    if (!m) throw err;
    throw new MirrordError(
      `image ${run.image} is for ${m[2]}, not ${m[1]}`,
      ExitCode.Usage,
      `Pull it for that platform (docker pull --platform ${m[1]} ${run.image}), or change --platform / container.platform`,
    );
  });
  try {
    await beforeStart(user);
  } catch (err) {
    await removeContainer(user, log);
    throw err;
  }
  const attached = await attachContainer(docker, user, { name: 'container', log, stdin: run.interactive, tty: run.tty, stderrLines: false });
  const stream = attached.raw;
  // process.stdout and stderr are never ended by a pipe; backpressure holds the container's output.
  attached.stdout.pipe(supervised?.stdout ?? process.stdout, { end: false });
  attached.stderr.pipe(supervised?.stderr ?? process.stderr, { end: false });
  const finished = new Promise<void>((resolve) => attached.stdout.once('end', () => resolve()));
  if (run.interactive) {
    if (run.tty && process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      restore.push(() => process.stdin.setRawMode(false));
    }
    process.stdin.pipe(stream);
    restore.push(() => process.stdin.unpipe(stream));
  }
  // Like `docker stop`: the signal first, SIGKILL if the container is still there after a grace
  // period (a PID 1 without a handler ignores SIGTERM).
  let killer: NodeJS.Timeout | undefined;
  restore.push(() => clearTimeout(killer));
  const forward = (signal: NodeJS.Signals) => {
    void user.kill({ signal }).catch(() => undefined);
    killer ??= setTimeout(() => void user.kill({ signal: 'SIGKILL' }).catch(() => undefined), 5000);
  };
  supervised?.onStart(forward);
  for (const s of supervised ? [] : (['SIGINT', 'SIGTERM', 'SIGHUP'] as const)) {
    // With a TTY, Ctrl-C is a byte on stdin the container's terminal turns into SIGINT itself.
    if (s === 'SIGINT' && run.tty && run.interactive) continue;
    process.on(s, forward);
    restore.push(() => process.off(s, forward));
  }
  // 'next-exit', registered before start: with AutoRemove (--rm) a plain wait may see the removal, not the exit.
  const waited = user.wait({ condition: 'next-exit' });
  await user.start();
  if (run.tty && process.stdout.isTTY) {
    const resize = () => void user.resize({ h: process.stdout.rows, w: process.stdout.columns }).catch(() => undefined);
    resize();
    process.stdout.on('resize', resize);
    restore.push(() => process.stdout.off('resize', resize));
  }
  const result = (await waited) as { StatusCode: number };
  // The last bytes of output may still be in flight when wait() answers.
  let grace: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise((r) => (grace = setTimeout(r, 2000)))]);
  // A pending timer would keep the CLI alive that long after the session ended.
  clearTimeout(grace);
  return result.StatusCode;
}
