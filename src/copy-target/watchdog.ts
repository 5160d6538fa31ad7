import { createLogger } from '../../common/log.js';
import { parentGone } from '../parent-pipe.js';
import type { KubeSettings } from '../platforms/kubernetes/client.js';
import type { ScaledWorkload } from './kubernetes.js';

/**
 * The copy_target watchdog (src/copy-target/session.ts starts it, detached): it reads its parent's
 * pipe, and when the pipe closes without `done` (the parent was killed), restores the scaled-down
 * workload and removes the copy. One pass, then it exits.
 */
export type WatchdogSpec =
  | { kind: 'docker'; container: string }
  | { kind: 'kubernetes'; kube: KubeSettings; namespace: string; pod: string; scaled?: ScaledWorkload };

export async function runCopyWatchdog(input: NodeJS.ReadableStream = process.stdin): Promise<void> {
  const last = (await parentGone(input))?.filter((l) => l.startsWith('spec ')).pop();
  if (last) await cleanUp(JSON.parse(last.slice('spec '.length)) as WatchdogSpec).catch(() => undefined);
}

async function cleanUp(spec: WatchdogSpec): Promise<void> {
  const log = createLogger('copy-target-watchdog', 'error');
  if (spec.kind === 'docker') {
    const { createDocker } = await import('../platforms/docker/client.js');
    const { removeCopy } = await import('./docker.js');
    await removeCopy(createDocker(), spec.container, log);
    return;
  }
  const { connectKube } = await import('../platforms/kubernetes/client.js');
  const { deletePod, setReplicas } = await import('./kubernetes.js');
  const kube = connectKube(spec.kube);
  // A transient API failure must not leave the workload at 0: a few tries, a second apart.
  for (let i = 0; spec.scaled && i < 10; i++) {
    try {
      await setReplicas(kube, spec.namespace, spec.scaled, spec.scaled.replicas);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  await deletePod(kube, spec.namespace, spec.pod, log);
}
