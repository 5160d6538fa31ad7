import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import type Docker from 'dockerode';
import { parse as parseDotenv } from 'dotenv';
import { flagOverrides, type ExecFlags } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { resolveFeatures } from '../config/schema.js';
import { createOptions, parseDockerRun, type DockerRun } from '../container/docker-run.js';
import { mergeEnv } from '../env/merge.js';
import { ExitCode, MirrordError } from '../errors.js';
import type { Logger } from '../log.js';
import { LABEL_AGENT, LABEL_OWNER, LABEL_SESSION, LABEL_TARGET, forceRemove } from '../platforms/docker/agent.js';
import { sidecarImageRecipe } from '../platforms/docker/agent-image.js';
import { ensureImage } from '../platforms/docker/images.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import { createProgress, type Progress } from '../progress.js';
import { targetFrom } from './exec.js';

const READY_PREFIX = 'MIRRORD_SIDECAR_READY ';
const LAYER_IN_SIDECAR = '/mirrord/libmirrord_layer.so';

interface Ready {
  layerAddr: string;
  env: Record<string, string>;
  hints: Record<string, string>;
  agentPid?: number;
}

/**
 * `mirrord container [flags] -- docker run ...`: the user's container runs in the context of the
 * target. A sidecar container runs the intproxy in the network namespace the user's container
 * joins; the sidecar speaks to the agent through this process, which relays the bytes between the
 * two containers' attached streams (so a remote DOCKER_HOST works as well as a local engine).
 */
export async function containerCommand(argv: string[], flags: ExecFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const run = parseDockerRun(argv);
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
  const target = targetFrom(config, flags.namespace);
  if (target.kind !== 'docker') {
    throw new MirrordError('container mode supports docker/ targets in this build', ExitCode.Target, 'Use -t docker/NAME_OR_ID');
  }
  const features = resolveFeatures(config);
  const platform = new DockerPlatform();
  const docker = platform.docker;
  await platform.reap(log.child('reaper'));
  const resolved = await platform.resolveTarget(target);
  const session = randomBytes(6).toString('hex');
  const token = randomBytes(24).toString('base64url');
  const handle = await platform.startAgent(resolved, {
    session,
    token,
    image: config.agent.image,
    logLevel: config.agent.log_level,
    startupTimeoutMs: config.agent.startup_timeout * 1000,
    progress,
    log: log.child('agent'),
  });
  const labels = (role: string) => ({
    [LABEL_AGENT]: role,
    [LABEL_SESSION]: session,
    [LABEL_OWNER]: `${os.hostname()}:${process.pid}`,
    [LABEL_TARGET]: resolved.id,
  });
  let sidecar: Docker.Container | undefined;
  let sidecarIn: Duplex | undefined;
  const restore: Array<() => void> = [];
  try {
    const image = await ensureImage(docker, sidecarImageRecipe(), { progress, log: log.child('images') });
    progress.update('starting the sidecar');
    sidecar = await docker.createContainer({
      Image: image,
      name: `mirrord-sidecar-${session}`,
      Env: [`MIRRORD_SIDECAR_TOKEN=${token}`, `MIRRORD_SIDECAR_FEATURES=${JSON.stringify(features)}`, `MIRRORD_SIDECAR_LOG=${config.agent.log_level}`],
      Labels: labels('sidecar'),
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: true,
      StdinOnce: true,
      HostConfig: {
        AutoRemove: true,
        NetworkMode: run.network,
        PortBindings: portBindings(run.publish),
        LogConfig: { Type: 'none', Config: {} },
      },
      ExposedPorts: Object.fromEntries(Object.keys(portBindings(run.publish) ?? {}).map((p) => [p, {}])),
    });
    const raw = (await sidecar.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as Duplex;
    sidecarIn = raw;
    const out = new PassThrough();
    const err = new PassThrough();
    docker.modem.demuxStream(raw, out, err);
    raw.on('end', () => {
      out.end();
      err.end();
    });
    await sidecar.start();
    // The relay: AP frames flow untouched between the agent's stream and the sidecar's.
    out.pipe(handle.link);
    handle.link.pipe(raw);
    const ready = await waitReady(err, config.agent.startup_timeout * 1000, log);
    // Before the user's program can listen: the guard removes the agent's iptables rules if the
    // agent dies, as in exec (there it starts with the first subscription; here we cannot see it).
    if (features.incoming.mode !== 'off' && ready.agentPid && handle.startGuard) await handle.startGuard(ready.agentPid);

    const { env } = mergeEnv({}, ready.env, features.env);
    for (const file of run.envFiles) run.env.push(...Object.entries(parseDotenv(readFileSync(file, 'utf8'))).map(([k, v]) => `${k}=${v}`));
    Object.assign(env, ready.hints, { LD_PRELOAD: LAYER_IN_SIDECAR, MIRRORD_LAYER_ADDR: ready.layerAddr, MIRRORD_SESSION: session });
    if (config.skip_processes?.length) env.MIRRORD_SKIP_PROCESSES = config.skip_processes.join(';');
    progress.succeed(`mirrord: running ${run.image} in the context of ${resolved.display}`);
    return await runUserContainer(docker, run, { ...createOptions(run, sidecar.id, env), Labels: labels('user') }, restore);
  } catch (err) {
    progress.fail();
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404 && !(err instanceof MirrordError)) {
      throw new MirrordError(`image ${run.image} is not on the Docker engine`, ExitCode.Program, `Build or pull it first (docker pull ${run.image})`, { cause: err });
    }
    throw err;
  } finally {
    for (const r of restore) r();
    // The sidecar exits when its stdin ends (the relay closes), and AutoRemove deletes it.
    sidecarIn?.end();
    handle.link.end();
    if (sidecar) await forceRemoveLater(sidecar, log);
    await handle.stop();
  }
}

function portBindings(publish: string[]): Record<string, Array<{ HostIp?: string; HostPort: string }>> | undefined {
  if (publish.length === 0) return undefined;
  const out: Record<string, Array<{ HostIp?: string; HostPort: string }>> = {};
  for (const p of publish) {
    const parts = p.split(':');
    const container = parts.pop()!;
    const key = container.includes('/') ? container : `${container}/tcp`;
    const hostPort = parts.pop() ?? '';
    const hostIp = parts.pop();
    (out[key] ??= []).push({ HostPort: hostPort, ...(hostIp ? { HostIp: hostIp } : {}) });
  }
  return out;
}

function waitReady(stderr: Readable, timeoutMs: number, log: Logger): Promise<Ready> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const tail: string[] = [];
    const timer = setTimeout(() => fail('did not get ready in time'), timeoutMs);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new MirrordError(`the mirrord sidecar ${why}${tail.length ? ` (it said: ${tail.slice(-3).join(' | ')})` : ''}`, ExitCode.Agent, 'Run with MIRRORD_LOG=debug'));
    };
    stderr.setEncoding('utf8');
    stderr.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith(READY_PREFIX)) {
          clearTimeout(timer);
          resolve(JSON.parse(line.slice(READY_PREFIX.length)) as Ready);
        } else if (line.trim()) {
          tail.push(line);
          log.debug(`sidecar: ${line}`);
        }
      }
    });
    stderr.once('end', () => fail('exited before it was ready'));
  });
}

/** Created, attached, started, waited for: exit code as the container's (128 + signal included). */
async function runUserContainer(docker: Docker, run: DockerRun, options: Docker.ContainerCreateOptions, restore: Array<() => void>): Promise<number> {
  const user = await docker.createContainer(options);
  const stream = (await user.attach({ stream: true, stdin: run.interactive, stdout: true, stderr: true, hijack: true })) as unknown as Duplex;
  if (run.tty) stream.pipe(process.stdout);
  else docker.modem.demuxStream(stream, process.stdout, process.stderr);
  const finished = new Promise<void>((resolve) => stream.once('end', () => resolve()));
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
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
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
  await Promise.race([finished, new Promise((r) => setTimeout(r, 2000))]);
  return result.StatusCode;
}

async function forceRemoveLater(c: Docker.Container, log: Logger): Promise<void> {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    try {
      await c.inspect();
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await forceRemove(c, log);
}
