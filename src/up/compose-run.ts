import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from '../../common/log.js';
import { INIT_IN_SIDECAR, LAYER_IN_SIDECAR } from '../../common/sidecar-contract.js';
import { composeArgs, composeAttached, composeStep, type ComposeProject } from '../compose/docker-compose.js';
import {
  serviceArgv,
  sidecarName,
  unescapeValues,
  toComposeYaml,
  withSessions,
  withSidecars,
  type ComposeDoc,
  type SessionService,
  type SidecarService,
} from '../compose/rewrite.js';
import { DEFAULT_MOUNTS_MAX_SIZE } from '../config/schema.js';
import { mergeEnv } from '../env/merge.js';
import { syncMounts } from '../local/container/mounts-sync.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { upSessionSettings } from './session-settings.js';
import { inSidecar, type InSidecar, type SidecarSettings, type SidecarSpec } from '../session/sidecar.js';
import { targetHostname } from '../local/container/hostname.js';
import { platformFor, startSession, type Session } from '../session/session.js';
import type { ImageConfig } from '../local/container/user-container.js';
import type { TargetSpec } from '../target.js';
import type { ComposePlan } from './compose-file.js';
import { inferTarget, type PlannedService } from './plan.js';
import { LABEL_UP, upLabelValue, type UpRunOptions } from './run.js';
import type { WatchdogSpec } from './watchdog.js';

// The hidden command the watchdog runs as (src/cli.ts registers it by this name).
import { UP_WATCHDOG_COMMAND as WATCHDOG_COMMAND } from '../hidden-commands.js';
export { WATCHDOG_COMMAND };

/** On every container of a compose `up`: `mirrord up down` finds the project by it. */
export const LABEL_UP_PROJECT = 'dev.mirrord.up.project';

const PROJECT = 'com.docker.compose.project';
const SERVICE = 'com.docker.compose.service';

interface Marked {
  plan: PlannedService;
  target?: TargetSpec;
  /** Its image's entrypoint, command and working directory. */
  image?: ImageConfig;
  sidecar: string;
  settings?: SidecarSettings;
  /** feature.hostname: the target's, for the sidecar (none when off or unknown). */
  hostname?: string;
  session?: Session<InSidecar>;
  exclude: string[];
  sync: boolean;
  maxBytes: number;
}

/**
 * `mirrord up` of a compose project (docs/up.md): a session per x-mirrord service, whose sidecar is
 * a service of the project; the rewritten project is run by the user's own `docker compose` (create,
 * copy the target's files in, start, attached). Resolves to the exit status of `up`.
 */
export async function runComposeUp(
  project: ComposeProject,
  plan: ComposePlan,
  o: UpRunOptions & { tty: boolean; build: boolean; timeoutGiven: boolean },
): Promise<number> {
  const docker = createDocker();
  await checkEngine(docker);
  const doc = plan.doc;
  const name = doc.name ?? path.basename(project.projectDirectory);
  const p: ComposeProject = { ...project, projectName: name };
  const labels = { [LABEL_UP]: upLabelValue(o.key), [LABEL_UP_PROJECT]: name };
  // The rewritten files hold the sessions' tokens: a private directory.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-compose-'));
  chmodSync(dir, 0o700);
  const file = path.join(dir, 'compose.yaml');
  const write = (d: ComposeDoc) => writeFileSync(file, toComposeYaml(d), { mode: 0o600 });
  const compose = (...rest: string[]) => composeArgs(p, [file], ...rest);
  const step = (...rest: string[]) => composeStep(compose(...rest), o.log, { tty: o.tty });

  const marked: Marked[] = plan.marked.map((s) => {
    const mounts = s.config.container?.mounts ?? { sync: true, max_size: DEFAULT_MOUNTS_MAX_SIZE };
    return {
      plan: s,
      sidecar: sidecarName(doc, s.name),
      exclude: [...volumeTargets(doc.services[s.name]!), '/mirrord'],
      sync: mounts.sync && s.target?.kind !== 'targetless',
      maxBytes: mounts.max_size,
    };
  });
  const sidecarServices = (): SidecarService[] =>
    marked.map((m) => ({
      service: m.plan.name,
      sidecar: m.sidecar,
      image: m.settings!.image,
      env: {
        ...Object.fromEntries(m.settings!.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
        // The program's working directory: local to the layer (src/session/sidecar.ts says the same for container mode).
        MIRRORD_SIDECAR_CWD: (doc.services[m.plan.name]!.working_dir as string | undefined) ?? (m.image?.WorkingDir || '/'),
      },
      labels: { ...m.settings!.labels, ...labels },
      netAdmin: m.plan.config.container?.capture === 'namespace',
      hostname: m.hostname,
    }));

  // The user's own files, with the sidecars as orphans: it works whichever step was reached.
  const down = composeArgs(p, p.files, 'down', '--remove-orphans', '-t', '0');
  // Compose's own stop_grace_period of each service, unless --timeout says otherwise.
  const stopTimeout = o.timeoutGiven ? ['-t', String(o.timeoutS)] : [];
  const watchdog = startWatchdog({ stop: compose('stop', ...stopTimeout), down, dir });
  let interrupted: NodeJS.Signals | undefined;
  let stop: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    o.log.debug(`${signal}: stopping the compose project`);
    stop?.();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let created = false;
  let imagesRead: Promise<void> | undefined;
  const volumes = new Set<string>();
  try {
    // Before any agent: every target exists (an unknown one stops here, with nothing created), and
    // every marked service's image is built or pulled, as Compose creates it, to read its command.
    for (const m of marked) m.target = await resolveTarget(m.plan, o.log);
    // While the agents start: the images (their command and working directory are read from them).
    imagesRead = (async () => {
      if (!marked.length) return;
      created = true;
      await composeStep(composeArgs(p, p.files, 'up', '--no-start', '--no-deps', ...(o.build ? ['--build'] : []), ...marked.map((m) => m.plan.name)), o.log, {
        tty: o.tty,
      });
      for (const m of marked) m.image = await containerImage(docker, await serviceContainer(docker, name, m.plan.name));
    })();
    imagesRead.catch(() => undefined);
    const images = imagesRead;
    o.progress.update(marked.length ? `starting ${marked.length} session${marked.length > 1 ? 's' : ''}` : 'starting the compose project');
    // Every sidecar is created by one `compose up --no-start`, once every session has its agent.
    const sidecarsCreated = barrier(marked.length, async () => {
      await images;
      write(withSidecars(doc, sidecarServices(), labels));
      created = true;
      // Only the sidecars: the services are recreated once more below anyway, with the sessions' env.
      await step('up', '--no-start', ...marked.map((m) => m.sidecar));
    });
    const started = await Promise.allSettled(
      marked.map(async (m) => {
        try {
          m.session = await startMarked(m, async (settings, hostname) => {
            m.settings = settings;
            m.hostname = hostname;
            await sidecarsCreated.arrive();
            return serviceContainer(docker, name, m.sidecar);
          });
        } catch (err) {
          sidecarsCreated.fail(err);
          throw err;
        }
      }),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (interrupted) return 128 + os.constants.signals[interrupted];
    for (const m of marked) for (const v of await containerVolumes(m.session!.host.container)) volumes.add(v);
    watchdog.volumes([...volumes]);

    // Now the services' programs: under mirrord-init, with the sessions' env, created (not started).
    const sessions: SessionService[] = [];
    for (const m of marked) sessions.push(await sessionService(doc, m));
    write(withSessions(doc, sidecarServices(), sessions, labels));
    created = true;
    // --build again: the services without x-mirrord (the marked ones hit the cache of the build above).
    await step('up', '--no-start', ...(o.build ? ['--build'] : []), ...plan.selected);
    for (const m of marked) {
      if (!m.sync || m.session!.host.ready.mountRoots?.length === 0) continue;
      const user = await serviceContainer(docker, name, m.plan.name);
      await syncMounts(docker, m.session!.host.container, user, { maxBytes: m.maxBytes, progress: o.progress, log: o.log.child(m.plan.name) });
    }
    if (interrupted) return 128 + os.constants.signals[interrupted];
    o.progress.succeed(
      `mirrord up: ${name}${marked.length ? `, ${marked.map((m) => `${m.plan.name} (${m.session!.targetDisplay})`).join(', ')}` : ' (no service has x-mirrord)'}`,
    );

    const child = composeAttached(
      compose(
        'up',
        '--no-recreate',
        '--no-build',
        ...marked.flatMap((m) => ['--no-attach', m.sidecar]),
        ...(o.noAbort ? [] : ['--abort-on-container-exit']),
        ...(o.colour ? [] : ['--no-color']),
        ...(o.prefix ? [] : ['--no-log-prefix']),
        ...plan.selected,
      ),
      o.log,
    );
    const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let stopped = false;
    stop = () => {
      if (stopped) return;
      stopped = true;
      // As Compose does on Ctrl-C: stop with the timeout; then Compose's `up` ends by itself.
      void step('stop', ...stopTimeout).catch((err: Error) => o.log.warn(err.message));
      setTimeout(
        () => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // gone
          }
        },
        (o.timeoutS + 30) * 1000,
      ).unref();
    };
    if (interrupted) stop();
    void whenRunning(docker, name, marked, ended).then((yes) => yes && o.onRunning?.());
    await ended;
    if (interrupted) return 128 + os.constants.signals[interrupted];
    return await exitStatus(docker, name, new Set(marked.map((m) => m.sidecar)), o.noAbort);
  } catch (err) {
    o.progress.fail();
    throw err;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    await Promise.all(marked.flatMap((m) => (m.session ? [m.session.close()] : [])));
    // A build still running when a session failed: down only once it has created what it creates.
    await imagesRead?.catch(() => undefined);
    if (created) await composeStep(down, o.log, { tty: false }).catch((err: Error) => o.log.warn(err.message));
    await Promise.all(
      [...volumes].map((v) =>
        docker
          .getVolume(v)
          .remove()
          .catch(() => undefined),
      ),
    );
    watchdog.done();
    rmSync(dir, { recursive: true, force: true });
  }

  async function startMarked(m: Marked, created: NonNullable<SidecarSpec['created']>): Promise<Session<InSidecar>> {
    const s = m.plan;
    const target = m.target!;
    const settings = upSessionSettings(s.config, labels);
    return startSession({
      target,
      ...settings,
      labels,
      intproxy: inSidecar({
        docker,
        publish: [],
        capture: s.config.container?.capture ?? 'off',
        mounts: m.sync ? { maxBytes: m.maxBytes, exclude: m.exclude } : undefined,
        labels,
        created,
        hostname: settings.features.hostname ? (t) => targetHostname(docker, t, o.log.child(s.name)) : undefined,
      }),
      log: o.log.child(s.name),
      progress: o.progress,
    });
  }
}

/** A service's program and env, now that its session runs: the target's env below the file's, override and the layer above. */
async function sessionService(doc: ComposeDoc, m: Marked): Promise<SessionService> {
  const session = m.session!;
  const envSettings = session.features.env;
  const { env: remoteEnv } = mergeEnv({}, await session.host.remoteEnv(), { ...envSettings, override: undefined });
  return {
    service: m.plan.name,
    sidecar: m.sidecar,
    argv: serviceArgv(doc.services[m.plan.name]!, m.image ?? {}, m.plan.name),
    init: { path: INIT_IN_SIDECAR, lifelinePort: session.host.ready.lifelinePort },
    remoteEnv,
    overrideEnv: envSettings.override ?? {},
    layerEnv: { ...(await session.layerEnv()), LD_PRELOAD: LAYER_IN_SIDECAR },
  };
}

/** A service's target, inferred from its name when the file names none; resolved, so an unknown one fails now. */
async function resolveTarget(s: PlannedService, log: Logger): Promise<TargetSpec> {
  if (!s.target) return inferTarget(s, log);
  const platform = await platformFor(s.target, { agent: s.config.agent, kube: { kubeconfig: s.config.kubeconfig, context: s.config.kube_context } });
  await platform.resolveTarget(s.target);
  return s.target;
}

async function containerImage(docker: Docker, c: Docker.Container): Promise<ImageConfig> {
  const info = await c.inspect();
  return ((await docker.getImage(info.Image).inspect()) as { Config?: ImageConfig }).Config ?? {};
}

/** The one container of a project's service. */
async function serviceContainer(docker: Docker, project: string, service: string): Promise<Docker.Container> {
  const [c] = await docker.listContainers({ all: true, filters: { label: [`${PROJECT}=${project}`, `${SERVICE}=${service}`] } });
  if (!c) throw new Error(`docker compose created no container for service ${service}`);
  return docker.getContainer(c.Id);
}

async function containerVolumes(c: Docker.Container): Promise<string[]> {
  const info = await c.inspect();
  return (info.Mounts ?? []).filter((m) => m.Type === 'volume' && m.Name).map((m) => m.Name!);
}

function volumeTargets(svc: Record<string, unknown>): string[] {
  const vols = (svc.volumes as Array<{ target?: string } | string> | undefined) ?? [];
  return (unescapeValues(vols) as typeof vols).map((v) => (typeof v === 'string' ? (v.split(':')[1] ?? v) : (v.target ?? ''))).filter(Boolean);
}

/**
 * The exit status of the project: the first service to have failed (the sidecars aside), or 0.
 * With abort on, the services stopped after the first one ended do not count.
 */
async function exitStatus(docker: Docker, project: string, sidecars: Set<string>, noAbort: boolean): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${PROJECT}=${project}`] } });
  const ended: Array<{ code: number; at: number }> = [];
  for (const c of list) {
    if (sidecars.has(c.Labels[SERVICE] ?? '')) continue;
    const info = await docker.getContainer(c.Id).inspect();
    if (info.State.Running || !info.State.StartedAt || info.State.StartedAt.startsWith('0001')) continue;
    ended.push({ code: info.State.ExitCode, at: Date.parse(info.State.FinishedAt) });
  }
  ended.sort((a, b) => a.at - b.at);
  if (noAbort) return ended.find((e) => e.code !== 0)?.code ?? 0;
  return ended[0]?.code ?? 0;
}

/** True once every container of the project runs (healthy where it has a healthcheck); false if `up` ended first. */
async function whenRunning(docker: Docker, project: string, marked: Marked[], ended: Promise<void>): Promise<boolean> {
  let done = false;
  void ended.then(() => (done = true));
  while (!done) {
    const list = await docker.listContainers({ all: true, filters: { label: [`${PROJECT}=${project}`] } });
    if (list.length > marked.length && list.every((c) => c.State === 'running' && !/health: starting|unhealthy/.test(c.Status))) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** Settles `arrive()` for all once `n` have arrived and `then` ran; a `fail()` rejects every waiter instead. */
function barrier(n: number, then: () => Promise<void>): { arrive(): Promise<void>; fail(err: unknown): void } {
  let arrived = 0;
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const all = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  all.catch(() => undefined);
  return {
    arrive() {
      if (++arrived === n) then().then(settle.resolve, settle.reject);
      return all;
    },
    fail: (err) => settle.reject(err),
  };
}

/**
 * What ends the project if this CLI is killed (SIGKILL leaves no finally): a detached process
 * holding a pipe from it. When the pipe closes without `done`, it stops and removes the project.
 */
function startWatchdog(spec: WatchdogSpec): { volumes(v: string[]): void; done(): void } {
  const child = spawn(process.execPath, [process.argv[1]!, WATCHDOG_COMMAND, JSON.stringify(spec)], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.unref();
  child.stdin!.on('error', () => undefined);
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  return {
    volumes: (v) => child.stdin!.write(`volumes ${JSON.stringify(v)}\n`),
    done: () => child.stdin!.end('done\n'),
  };
}
