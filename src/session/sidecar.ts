import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { READY_PREFIX, type SidecarReady } from '../../common/sidecar-contract.js';
import { ensureImage } from '../images/build.js';
import { sidecarImageRecipe } from '../images/recipes.js';
import { attachContainer, type Attached } from '../platforms/docker/attach.js';
import { sessionLabels } from '../platforms/docker/labels.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import { removeContainer } from '../platforms/docker/remove.js';
import { createFdVolume } from './fd-pass.js';
import type { ResolvedTarget } from '../platforms/platform.js';
import type { IntproxyHost } from './session.js';

export interface SidecarSpec {
  /** The engine the local container runs on (the agent may run elsewhere: a cluster). */
  docker: Docker;
  /** The local container's --network: the sidecar owns the namespace, the container joins it. */
  network?: string;
  /** The local container's -p: published on the sidecar, which owns the namespace. */
  publish: string[];
  /** container.capture: iptables in the shared namespace (needs NET_ADMIN). */
  capture: 'off' | 'namespace';
  /** The target's mounted files to copy (container.mounts), or none. */
  mounts?: { maxBytes: number; exclude: string[] };
  /** Added to the sidecar's labels. */
  labels?: Record<string, string>;
  /** The working directory of the program in the local container: local to the layer, as a program's own directory is. */
  cwd?: string;
  /**
   * A sidecar something else creates (a Compose service of `mirrord up`), given what it must run
   * with and under which host name (`hostname` below); resolves to the created, not yet started,
   * container. Absent: the sidecar is created here.
   */
  created?: (settings: SidecarSettings, hostname: string | undefined) => Promise<Docker.Container>;
  /** feature.hostname: the host name the sidecar (and so the container sharing its namespaces) runs under. */
  hostname?: (target: ResolvedTarget) => Promise<string | undefined>;
}

/** What a sidecar container runs with: its image, its env (the session's token and features), its labels. */
export interface SidecarSettings {
  image: string;
  env: string[];
  labels: Record<string, string>;
}

/** The sidecar host's extras: the container a local container joins, and what it announced. */
export interface InSidecar {
  readonly container: Docker.Container;
  readonly docker: Docker;
  readonly ready: SidecarReady;
}

/**
 * The intproxy in a sidecar container (container mode, and every local container to come): the
 * local container joins its network namespace (`--network container:SIDECAR`) and mounts the layer
 * from its volume. The sidecar speaks AP over its attached stdin/stdout, and this process relays
 * those bytes to the agent's link, so a remote DOCKER_HOST works and the agent may be in a cluster.
 */
export function inSidecar(spec: SidecarSpec): IntproxyHost<InSidecar> {
  let image: string | undefined;
  return {
    name: 'sidecar',
    // One engine runs the user's container, the sidecar and a Docker target's agent. Containers
    // something else creates (mirrord up's services) get no volume: they stay on the stream.
    makeFdPass: spec.created ? undefined : (session, log) => createFdVolume(spec.docker, session, log),
    fdPassAnyEngine: true,
    async prepare(target, log, progress) {
      // Sidecars (and user containers) of dead CLIs on this engine: a Docker target's platform has
      // just reaped them; a Kubernetes target's reaps only its cluster.
      if (target.spec.kind !== 'docker') await new DockerPlatform(spec.docker).reap(log.child('reaper'));
      image = await ensureImage(spec.docker, sidecarImageRecipe(), { progress, log: log.child('images') });
    },
    async start(ctx) {
      const { docker } = spec;
      const log = ctx.log;
      ctx.progress.update('starting the sidecar');
      image ??= await ensureImage(docker, sidecarImageRecipe(), { progress: ctx.progress, log: log.child('images') });
      const settings: SidecarSettings = {
        image,
        env: [
          `MIRRORD_SIDECAR_TOKEN=${ctx.token}`,
          `MIRRORD_SIDECAR_FEATURES=${JSON.stringify(ctx.features)}`,
          `MIRRORD_SIDECAR_LOG=${ctx.agentConfig.log_level}`,
          `MIRRORD_SIDECAR_CAPTURE=${spec.capture}`,
          ...(spec.mounts ? [`MIRRORD_SIDECAR_MOUNTS=${JSON.stringify(spec.mounts)}`] : []),
          ...(spec.cwd ? [`MIRRORD_SIDECAR_CWD=${spec.cwd}`] : []),
          ...(process.env.MIRRORD_LAYER_LOG ? [`MIRRORD_LAYER_LOG=${process.env.MIRRORD_LAYER_LOG}`] : []),
          ...(ctx.fdPass && (await ctx.fdPass.probe(log)) ? ['MIRRORD_SIDECAR_FDPASS=1'] : []),
        ],
        labels: { ...sessionLabels('sidecar', ctx.id, ctx.target.id), ...spec.labels },
      };
      const hostname = await spec.hostname?.(ctx.target);
      const container = spec.created ? await spec.created(settings, hostname) : await createSidecar(docker, ctx.id, settings, spec, hostname);
      let attached: Attached | undefined;
      try {
        attached = await attachContainer(docker, container, { name: 'sidecar', log, stderrLines: false });
        const readyLine = waitReady(attached.stderr, ctx.agentConfig.startup_timeout * 1000, log);
        await container.start();
        // The relay: AP frames flow untouched between the agent's stream and the sidecar's.
        attached.stdout.pipe(ctx.agent.link);
        ctx.agent.link.pipe(attached.raw);
        const ready = await readyLine;
        // Before the user's program can listen: the guard removes the agent's rules if the agent
        // dies (in-process it starts with the first subscription; the sidecar's cannot be seen here).
        if (ctx.features.incoming.mode !== 'off') await ctx.guard(ready.agentPid);
        const sidecarIn = attached.raw;
        const lost: Array<(reason: string) => void> = [];
        let closed = false;
        sidecarIn.once('close', () => {
          if (!closed) for (const cb of lost) cb('the sidecar left');
        });
        return {
          container,
          docker,
          ready,
          layerAddr: ready.layerAddr,
          remoteEnv: () => Promise.resolve(ready.env),
          fileHints: () => Promise.resolve(ready.hints),
          onLinkLost: (cb) => lost.push(cb),
          closesWithAgent: true,
          async close() {
            closed = true;
            // The sidecar exits when its stdin ends (the relay closes), and AutoRemove deletes it.
            ctx.agent.link.unpipe(sidecarIn);
            attached!.stdout.unpipe(ctx.agent.link);
            sidecarIn.end();
            ctx.agent.link.end();
            // Created here: AutoRemove deletes it once it exits. A Compose sidecar is stopped by then.
            await removeContainer(container, log, spec.created ? 0 : 3000);
          },
        };
      } catch (err) {
        attached?.raw.destroy();
        await removeContainer(container, log);
        if (err instanceof MirrordError) throw err;
        throw ctx.didNotAnswer(err);
      }
    },
  };
}

/** The sidecar as `mirrord container` runs it: created here, removed by the engine when its stdin closes. */
function createSidecar(docker: Docker, id: string, settings: SidecarSettings, spec: SidecarSpec, hostname?: string): Promise<Docker.Container> {
  const ports = portBindings(spec.publish);
  return docker.createContainer({
    Image: settings.image,
    name: `mirrord-sidecar-${id}`,
    Hostname: hostname,
    Env: settings.env,
    Labels: settings.labels,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    HostConfig: {
      AutoRemove: true,
      // iptables for namespace capture, in the namespace the user's container shares.
      CapAdd: spec.capture === 'namespace' ? ['NET_ADMIN'] : undefined,
      NetworkMode: spec.network,
      PortBindings: ports,
      LogConfig: { Type: 'none', Config: {} },
    },
    ExposedPorts: Object.fromEntries(Object.keys(ports ?? {}).map((p) => [p, {}])),
  });
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

/** The sidecar's one JSON line on stderr once its intproxy runs; its other lines go to the debug log. */
function waitReady(stderr: Readable, timeoutMs: number, log: Logger): Promise<SidecarReady> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const tail: string[] = [];
    const timer = setTimeout(() => fail('did not get ready in time'), timeoutMs);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(
        new MirrordError(
          `the mirrord sidecar ${why}${tail.length ? ` (it said: ${tail.slice(-3).join(' | ')})` : ''}`,
          ExitCode.Agent,
          'Run with MIRRORD_LOG=debug',
        ),
      );
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
          resolve(JSON.parse(line.slice(READY_PREFIX.length)) as SidecarReady);
        } else if (line.trim()) {
          tail.push(line);
          log.debug(`sidecar: ${line}`);
        }
      }
    });
    stderr.once('end', () => fail('exited before it was ready'));
  });
}
