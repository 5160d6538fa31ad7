import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import type Docker from 'dockerode';
import { parse as parseDotenv } from 'dotenv';
import { flagOverrides, type ExecFlags } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { DEFAULT_MOUNTS_MAX_SIZE, resolveFeatures } from '../config/schema.js';
import { bindDestinations, createOptions, parseDockerRun } from '../local/container/docker-run.js';
import { syncMounts } from '../local/container/mounts-sync.js';
import { imageConfig, runUserContainer, underInit } from '../local/container/user-container.js';
import { mergeEnv } from '../env/merge.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LABEL_AGENT, LABEL_OWNER, LABEL_SESSION, LABEL_TARGET, forceRemove } from '../platforms/docker/agent.js';
import { sidecarImageRecipe } from '../images/recipes.js';
import { ensureImage } from '../images/build.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import { createProgress, type Progress } from '../progress.js';
import { platformFor } from '../session/session.js';
import { LAYER_IN_SIDECAR, READY_PREFIX, type SidecarReady as Ready } from '../../common/sidecar-contract.js';
import { targetFrom } from './exec.js';

/**
 * `mirrord container [flags] -- docker run ...`: the user's container runs in the context of the
 * target. A sidecar container runs the intproxy in the network namespace the user's container
 * joins; the sidecar speaks to the agent through this process, which relays the bytes between the
 * two containers' attached streams (so a remote DOCKER_HOST works as well as a local engine). The
 * user's container is created, given the target's mounted files, then started under mirrord-init,
 * which ends it when the sidecar goes (README: "mirrord container").
 */
export async function containerCommand(argv: string[], flags: ExecFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const run = parseDockerRun(argv);
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
  const target = targetFrom(config, flags.namespace);
  const features = resolveFeatures(config);
  const capture = config.container?.capture ?? 'off';
  const mounts = config.container?.mounts ?? { sync: true, max_size: DEFAULT_MOUNTS_MAX_SIZE };
  // The user's own mounts win over the target's, and the sidecar's volume is ours.
  // Targetless has no target file system to copy from.
  const syncOptions = mounts.sync && target.kind !== 'targetless' ? { maxBytes: mounts.max_size, exclude: [...bindDestinations(run.binds), '/mirrord'] } : undefined;
  const started = Date.now();
  // The user's container and the sidecar always run on the Docker engine; the agent runs next to the
  // target, on that engine or in a Kubernetes cluster.
  const local = new DockerPlatform();
  const docker = local.docker;
  const platform = target.kind === 'docker' ? local : await platformFor(target, { agent: config.agent, kube: { kubeconfig: config.kubeconfig, context: config.kube_context } });
  await local.reap(log.child('reaper'));
  const resolved = await platform.resolveTarget(target);
  const userImage = await imageConfig(docker, run.image);
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
      Env: [
        `MIRRORD_SIDECAR_TOKEN=${token}`,
        `MIRRORD_SIDECAR_FEATURES=${JSON.stringify(features)}`,
        `MIRRORD_SIDECAR_LOG=${config.agent.log_level}`,
        `MIRRORD_SIDECAR_CAPTURE=${capture}`,
        ...(syncOptions ? [`MIRRORD_SIDECAR_MOUNTS=${JSON.stringify(syncOptions)}`] : []),
        ...(process.env.MIRRORD_LAYER_LOG ? [`MIRRORD_LAYER_LOG=${process.env.MIRRORD_LAYER_LOG}`] : []),
      ],
      Labels: labels('sidecar'),
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: true,
      StdinOnce: true,
      HostConfig: {
        AutoRemove: true,
        // iptables for namespace capture, in the namespace the user's container shares.
        CapAdd: capture === 'namespace' ? ['NET_ADMIN'] : undefined,
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
    log.debug(`sidecar ready after ${Date.now() - started} ms`);
    // Before the user's program can listen: the guard removes the agent's iptables rules if the
    // agent dies, as in exec (there it starts with the first subscription; here we cannot see it).
    if (features.incoming.mode !== 'off' && ready.agentPid && handle.startGuard) await handle.startGuard(ready.agentPid);

    const { env } = mergeEnv({}, ready.env, features.env);
    for (const file of run.envFiles) run.env.push(...Object.entries(parseDotenv(readFileSync(file, 'utf8'))).map(([k, v]) => `${k}=${v}`));
    Object.assign(env, ready.hints, { LD_PRELOAD: LAYER_IN_SIDECAR, MIRRORD_LAYER_ADDR: ready.layerAddr, MIRRORD_SESSION: session });
    if (config.skip_processes?.length) env.MIRRORD_SKIP_PROCESSES = config.skip_processes.join(';');
    const options = underInit(run, userImage, { ...createOptions(run, sidecar.id, env), Labels: labels('user') }, ready.lifelinePort);
    const sidecarContainer = sidecar;
    return await runUserContainer(docker, run, options, restore, async (user) => {
      if (syncOptions && ready.mountRoots?.length !== 0) await syncMounts(docker, sidecarContainer, user, { maxBytes: syncOptions.maxBytes, progress, log: log.child('mounts') });
      progress.succeed(`mirrord: running ${run.image} in the context of ${resolved.display}`);
    });
  } catch (err) {
    progress.fail();
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404 && !(err instanceof MirrordError)) {
      throw new MirrordError(`image ${run.image} is not on the Docker engine`, ExitCode.Program, `Build or pull it first (docker pull ${run.image})`, { cause: err });
    }
    throw err;
  } finally {
    for (const r of restore) r();
    log.debug(`user container done after ${Date.now() - started} ms; ending the session`);
    // The sidecar exits when its stdin ends (the relay closes), and AutoRemove deletes it.
    sidecarIn?.end();
    handle.link.end();
    // Independent exits: waiting for both at once saves a polling round at every session's end.
    await Promise.all([sidecar ? forceRemoveLater(sidecar, log) : undefined, handle.stop()]);
    log.debug(`session ended after ${Date.now() - started} ms`);
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
