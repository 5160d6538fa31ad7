import { spawn } from 'node:child_process';
import type { Logger } from '../../common/log.js';
import type { ResolvedFeatures } from '../config/schema.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import type { KubeSettings } from '../platforms/kubernetes/client.js';
import type { ResolvedTarget, TargetPlatform } from '../platforms/platform.js';
import type { Progress } from '../progress.js';
import type { TargetSpec } from '../target.js';
import type { WatchdogSpec } from './watchdog.js';

// The hidden command the watchdog runs as (src/cli.ts registers it by this name).
import { COPY_WATCHDOG_COMMAND } from '../hidden-commands.js';

export interface TargetCopy {
  /** The copy, resolved on the same platform: what the session's agent attaches to. */
  target: ResolvedTarget;
  /** Removes the copy (and restores a scaled-down workload); the watchdog is told it is done. */
  release(): Promise<void>;
}

/**
 * feature.copy_target: replaces the resolved target by a copy made for this session. Besides the
 * session's own release at its end, a detached watchdog holds a pipe from this CLI: if the CLI is
 * killed (SIGKILL leaves no finally), the pipe closes without `done` and the watchdog removes the
 * copy and restores the workload's replica count, within a second or two (docs/configuration.md).
 */
export async function copyTarget(
  platform: TargetPlatform,
  original: ResolvedTarget,
  o: { session: string; copy: NonNullable<ResolvedFeatures['copy_target']>; kube?: KubeSettings; startupTimeoutMs: number; progress: Progress; log: Logger },
): Promise<TargetCopy> {
  const log = o.log.child('copy-target');
  if (platform instanceof DockerPlatform) {
    const { copyDockerContainer } = await import('./docker.js');
    o.progress.update(`copying ${original.display}`);
    const made = await copyDockerContainer(platform.docker, original.id, o.session, log);
    const watchdog = startWatchdog({ kind: 'docker', container: made.id });
    return finish(platform, { kind: 'docker', container: made.id }, made.remove, watchdog);
  }
  const spec = original.spec;
  if (spec.kind === 'docker' || spec.kind === 'targetless') throw new Error(`copy_target: no copy of a ${spec.kind} target`);
  const { connectKube } = await import('../platforms/kubernetes/client.js');
  const { resolveKubeTarget } = await import('../platforms/kubernetes/resolve.js');
  const { copyKubePod } = await import('./kubernetes.js');
  const kube = connectKube(o.kube);
  const t = await resolveKubeTarget(kube, spec);
  let watchdog: ReturnType<typeof startWatchdog> | undefined;
  const made = await copyKubePod(kube, t, {
    session: o.session,
    scaleDown: o.copy.scale_down,
    timeoutMs: o.startupTimeoutMs,
    progress: o.progress,
    log,
    started(c) {
      // Told again once the workload is scaled down: the newest line is the one that counts.
      watchdog ??= startWatchdog({ kind: 'kubernetes', kube: o.kube ?? {}, namespace: c.namespace, pod: c.pod });
      watchdog.update({ kind: 'kubernetes', kube: o.kube ?? {}, namespace: c.namespace, pod: c.pod, scaled: c.scaled });
    },
  }).catch((err: unknown) => {
    // The copy's own rollback ran: the watchdog has nothing left to do.
    watchdog?.done();
    throw err;
  });
  return finish(platform, { kind: 'pod', name: made.pod, container: made.container, namespace: made.namespace }, made.release, watchdog!);
}

async function finish(
  platform: TargetPlatform,
  spec: TargetSpec,
  release: () => Promise<void>,
  watchdog: ReturnType<typeof startWatchdog>,
): Promise<TargetCopy> {
  let released: Promise<void> | undefined;
  const done = () =>
    (released ??= (async () => {
      await release();
      watchdog.done();
    })());
  try {
    const target = await platform.resolveTarget(spec);
    return { target, release: done };
  } catch (err) {
    await done();
    throw err;
  }
}

function startWatchdog(spec: WatchdogSpec): { update(s: WatchdogSpec): void; done(): void } {
  const child = spawn(process.execPath, [process.argv[1]!, COPY_WATCHDOG_COMMAND], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.unref();
  child.stdin!.on('error', () => undefined);
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  const update = (s: WatchdogSpec) => child.stdin!.write(`spec ${JSON.stringify(s)}\n`);
  update(spec);
  return { update, done: () => child.stdin!.end('done\n') };
}
