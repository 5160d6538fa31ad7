import net from 'node:net';
import os from 'node:os';
import type { Writable } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { DEFAULT_MOUNTS_MAX_SIZE } from '../config/schema.js';
import { bindDestinations, parseDockerRun } from '../local/container/docker-run.js';
import { runContainer } from '../local/container/run.js';
import { imageConfig } from '../local/container/user-container.js';
import { initPath, prepareProgram, runProcess } from '../local/process.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import type { Progress } from '../progress.js';
import { upSessionSettings } from './session-settings.js';
import { inProcess } from '../session/in-process.js';
import { inSidecar } from '../session/sidecar.js';
import { targetHostname } from '../local/container/hostname.js';
import { startSession, type Session } from '../session/session.js';
import { formatTarget } from '../target.js';
import { prefixedLines } from './output.js';
import { inferTarget, type PlannedService } from './plan.js';

/** The label every agent, guard, sidecar and container of an `up` carries: `mirrord up down` finds them by it. */
export const LABEL_UP = 'dev.mirrord.up';

export interface UpRunOptions {
  key: string;
  colour: boolean;
  prefix: boolean;
  /** Keep the other services running when one exits. */
  noAbort: boolean;
  /** Seconds between the stop signal and SIGKILL. */
  timeoutS: number;
  /** Called once every service runs (`--wait` returns there). */
  onRunning?: () => void;
  log: Logger;
  progress: Progress;
}

interface Running {
  name: string;
  session: Session<unknown>;
  stop?: (signal: NodeJS.Signals) => void;
  /** After --timeout: what ends the service for good (containers; programs end through their lifeline). */
  kill?: () => void;
  /** Starts the program or container; called once every session is up. */
  launch?: () => void;
  exited?: Promise<number>;
  out: Writable;
  err: Writable;
}

/** A label value Kubernetes and Docker both take: the key, made safe. */
export function upLabelValue(key: string): string {
  return (
    key
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
      .slice(0, 63) || 'up'
  );
}

/**
 * Starts a session per service (agents in parallel), then their programs and containers with
 * prefixed output; resolves to the exit status of `up`: the first failing service's own status,
 * 128 + signal after an interrupt, 0 when all ended well. Every session is closed on every path.
 */
export async function runUp(services: PlannedService[], o: UpRunOptions): Promise<number> {
  const width = Math.max(...services.map((s) => s.name.length));
  const labels = { [LABEL_UP]: upLabelValue(o.key) };
  const lifelines = await lifelineServer();
  const running: Running[] = [];
  let interrupted: NodeJS.Signals | undefined;
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    for (const r of running) r.stop?.(signal);
    // Then the end: containers get SIGKILL; each program's mirrord-init, its lifeline cut, sends
    // SIGTERM and 2 s later SIGKILL to the program's whole process group (a program that ignores the
    // signal, or a child it left, included), then exits itself.
    setTimeout(() => {
      for (const r of running) r.kill?.();
      lifelines.cut();
    }, o.timeoutS * 1000).unref();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    o.log.debug(`${signal}: stopping every service`);
    stopAll(signal === 'SIGHUP' ? 'SIGTERM' : signal);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    o.progress.update(`starting ${services.length} service${services.length > 1 ? 's' : ''}`);
    const started = await Promise.allSettled(services.map((s, i) => startService(s, i)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (interrupted) return 128 + os.constants.signals[interrupted];
    // Every session is up before any program starts: a target that cannot be reached stops the
    // whole up before anything ran, and no service can end before the others exist.
    for (const r of running) r.launch!();
    o.progress.succeed(`mirrord up: ${services.map((s) => `${s.name} (${running.find((r) => r.name === s.name)!.session.targetDisplay})`).join(', ')}`);
    o.onRunning?.();

    let firstFailure: number | undefined;
    await Promise.all(
      running.map(async (r) => {
        const status = await r.exited!.catch((err: Error) => {
          r.err.write(`${err.message}\n`);
          return 1;
        });
        r.out.end();
        r.err.end();
        o.log.debug(`service ${r.name} exited ${status}`);
        if (status !== 0 && firstFailure === undefined && !stopping) firstFailure = status;
        if (!o.noAbort) stopAll('SIGTERM');
      }),
    );
    if (interrupted) return 128 + os.constants.signals[interrupted];
    return firstFailure ?? 0;
  } catch (err) {
    o.progress.fail();
    throw err;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    await Promise.all(running.map((r) => r.session.close()));
    lifelines.close();
  }

  async function startService(s: PlannedService, index: number): Promise<void> {
    const target = s.target ?? (await inferTarget(s, o.log));
    const out = prefixedLines(s.name, index, process.stdout, { colour: o.colour, prefix: o.prefix, width });
    const err = prefixedLines(s.name, index, process.stderr, { colour: o.colour, prefix: o.prefix, width });
    const log = o.log.child(s.name);
    const settings = upSessionSettings(s.config, labels);
    if (s.run.type === 'exec') {
      const [cmd, ...args] = s.run.command as [string, ...string[]];
      const { program, layer } = prepareProgram(cmd);
      const session = await startSession({ target, ...settings, intproxy: inProcess({ exe: program }), labels, log, progress: o.progress });
      const r: Running = { name: s.name, session, out, err };
      r.launch = () =>
        (r.exited = runProcess(session, { program, layer, argv0: cmd, args }, log, o.progress, {
          stdout: out,
          stderr: err,
          lifelinePort: initPath() ? lifelines.port : undefined,
          onStart: (stop) => (r.stop = stop),
        }));
      running.push(r);
    } else if (s.run.type === 'container') {
      const argv = s.run.command;
      const dockerRun = parseDockerRun(argv);
      const docker = createDocker();
      await checkEngine(docker);
      const image = await imageConfig(docker, dockerRun.image);
      const mounts = s.config.container?.mounts ?? { sync: true, max_size: DEFAULT_MOUNTS_MAX_SIZE };
      const sync = mounts.sync && target.kind !== 'targetless';
      const session = await startSession({
        target,
        ...settings,
        labels,
        intproxy: inSidecar({
          docker,
          network: dockerRun.network,
          publish: dockerRun.publish,
          capture: s.config.container?.capture ?? 'off',
          mounts: sync ? { maxBytes: mounts.max_size, exclude: [...bindDestinations(dockerRun.binds), '/mirrord'] } : undefined,
          cwd: dockerRun.workdir ?? (image.WorkingDir || '/'),
          labels,
          hostname: settings.features.hostname ? (t) => targetHostname(docker, t, log) : undefined,
        }),
        log,
        progress: o.progress,
      });
      const r: Running = { name: s.name, session, out, err };
      running.push(r);
      r.launch = () =>
        (r.exited = runContainer(session, dockerRun, image, {
          syncMounts: sync,
          maxBytes: mounts.max_size,
          log,
          progress: o.progress,
          labels,
          supervised: {
            stdout: out,
            stderr: err,
            onStart: (stop) => {
              r.stop = stop;
              r.kill = () => stop('SIGKILL');
            },
          },
        }));
    }
    log.debug(`service ${s.name}: ${formatTarget(target)}`);
  }
}

/** One loopback server for every program's mirrord-init: each connection is one program's lifeline. */
async function lifelineServer(): Promise<{ port: number; cut(): void; close(): void }> {
  const held = new Set<net.Socket>();
  const server = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  // Each mirrord-init whose lifeline is cut ends its program: SIGTERM, and SIGKILL 2 s later.
  const cut = () => {
    for (const s of held) s.destroy();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut,
    close() {
      cut();
      server.close();
    },
  };
}
