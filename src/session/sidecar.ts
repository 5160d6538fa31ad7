import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { parseLevel } from '../../common/log.js';
import { IDLE_PREFIX, READY_PREFIX, type SidecarReady } from '../../common/sidecar-contract.js';
import { logFilePath, proxyLogger } from '../intproxy/proxy-log.js';
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { ensureImage } from '../images/build.js';
import { sidecarImageRecipe } from '../images/recipes.js';
import { attachContainer, type Attached } from '../platforms/docker/attach.js';
import { sessionLabels } from '../platforms/docker/labels.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import { removeContainer } from '../platforms/docker/remove.js';
import { createFdVolume } from './fd-pass.js';
import type { ResolvedTarget } from '../platforms/platform.js';
import type { IntproxyHost } from './session.js';
import type { SidecarExtra } from '../config/sidecar-args.js';

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
  /** container.cli_extra_args, read (src/config/sidecar-args.ts): more labels, env and HostConfig of the sidecar. */
  extra?: SidecarExtra;
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
          ...(ctx.proxies.internal ? [`MIRRORD_SIDECAR_PROXY=${JSON.stringify(ctx.proxies.internal)}`] : []),
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
        const lost: Array<(reason: string) => void> = [];
        const internal = ctx.proxies.internal;
        // The sidecar's log lines (its intproxy's among them): internal_proxy.log_destination, else the debug log.
        const sidecarLine = internal?.log_destination ? fileSink(logFilePath(internal.log_destination, 'mirrord-intproxy', ctx.id)) : undefined;
        const onLine = (line: string) => {
          if (line.startsWith(IDLE_PREFIX)) {
            // The sidecar ends its link; the agent's end must not close the sidecar's stdin, which
            // would end the sidecar and the container with it: the container runs on, as the program of exec.
            ctx.agent.link.unpipe(attached!.raw);
            return void lost.forEach((cb) => cb(`the session ended: ${line.slice(IDLE_PREFIX.length)}`));
          }
          if (sidecarLine) sidecarLine(line);
          else log.debug(`sidecar: ${line}`);
        };
        // external_proxy.start_idle_timeout: how long the relay waits for the sidecar's intproxy.
        const readySeconds = ctx.proxies.external?.start_idle_timeout ?? ctx.agentConfig.startup_timeout;
        const readyLine = waitReady(attached.stderr, readySeconds * 1000, onLine);
        await container.start();
        // The relay (mirrord's external proxy): AP frames flow untouched between the agent's stream and the sidecar's.
        const ext = ctx.proxies.external;
        const relayLog = proxyLogger(
          ext && { level: ext.log_level, destination: ext.log_destination, json: ext.json_log },
          'mirrord-extproxy',
          ctx.id,
          log.child('relay'),
          parseLevel(process.env.MIRRORD_LOG),
        );
        const carried = { toAgent: 0, toSidecar: 0 };
        attached.stdout.on('data', (d: Buffer) => (carried.toAgent += d.length));
        ctx.agent.link.on('data', (d: Buffer) => (carried.toSidecar += d.length));
        attached.stdout.once('end', () =>
          relayLog.info(`the sidecar ended its link: ${carried.toAgent} bytes to the agent, ${carried.toSidecar} to the sidecar`),
        );
        attached.stdout.pipe(ctx.agent.link);
        ctx.agent.link.pipe(attached.raw);
        relayLog.info(`relaying container ${container.id.slice(0, 12)} (sidecar of session ${ctx.id}) to the agent on ${ctx.target.display}`);
        const ready = await readyLine;
        relayLog.info(`the sidecar's intproxy is ready at ${ready.layerAddr} (in the container's namespace)`);
        // Before the user's program can listen: the guard removes the agent's rules if the agent
        // dies (in-process it starts with the first subscription; the sidecar's cannot be seen here).
        if (ctx.features.incoming.mode !== 'off') await ctx.guard(ready.agentPid);
        const sidecarIn = attached.raw;
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
            relayLog.info(`relay closing: ${carried.toAgent} bytes to the agent, ${carried.toSidecar} to the sidecar`);
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
  const extra = spec.extra;
  const ports = portBindings([...spec.publish, ...(extra?.publish ?? [])]);
  // cli_extra_args come first: the session's own env and labels win over theirs.
  const capAdd = [...(extra?.host.CapAdd ?? []), ...(spec.capture === 'namespace' ? ['NET_ADMIN'] : [])];
  return docker.createContainer({
    Image: settings.image,
    name: `mirrord-sidecar-${id}`,
    Hostname: hostname,
    Env: [...(extra?.env ?? []), ...settings.env],
    Labels: { ...extra?.labels, ...settings.labels },
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    HostConfig: {
      ...extra?.host,
      AutoRemove: true,
      // iptables for namespace capture, in the namespace the user's container shares.
      CapAdd: capAdd.length ? capAdd : undefined,
      NetworkMode: spec.network ?? extra?.network,
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
function waitReady(stderr: Readable, timeoutMs: number, onLine: (line: string) => void): Promise<SidecarReady> {
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
          onLine(line);
        }
      }
    });
    stderr.once('end', () => fail('exited before it was ready'));
  });
}

/** Appends lines to a file (its directories made now, so a bad path fails the start). */
function fileSink(file: string): (line: string) => void {
  mkdirSync(path.dirname(file), { recursive: true });
  appendFileSync(file, '');
  return (line) => {
    try {
      appendFileSync(file, line + '\n');
    } catch {
      // A log that cannot be written must not take the session down.
    }
  };
}
