import type * as k8s from '@kubernetes/client-node';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Progress } from '../progress.js';
import { call, isApiStatus, type Kube } from '../platforms/kubernetes/client.js';
import type { KubeTarget } from '../platforms/kubernetes/resolve.js';

/**
 * feature.copy_target on Kubernetes: a new pod from the target pod's spec, which the session then
 * targets. As in mirrord, the copy has no probes (a breakpoint does not get it restarted). Without
 * scale_down its labels are replaced by ours, so no Service or controller selects it; with
 * scale_down it keeps the workload's labels (its Services now send everything to the copy) except
 * the controllers' own hash labels, so the scaled-down ReplicaSet does not adopt and delete it.
 */

export const COPY_LABEL_SESSION = 'dev.mirrord/copy-session';
export const COPY_LABEL_OF = 'dev.mirrord/copy-of';
/** Labels a controller sets on its own pods: keeping them would let it adopt the copy. */
const CONTROLLER_LABELS = ['pod-template-hash', 'controller-revision-hash', 'statefulset.kubernetes.io/pod-name', 'apps.kubernetes.io/pod-index'];
const DROPPED_ANNOTATIONS = /^(kubectl\.kubernetes\.io\/last-applied-configuration|kubernetes\.io\/psp)$/;

export interface ScaledWorkload {
  kind: 'deployment' | 'statefulset';
  name: string;
  replicas: number;
}

/** The copy's manifest: pure, so that what is kept and what is dropped is unit-tested. */
export function copyPodManifest(pod: k8s.V1Pod, session: string, scaleDown: boolean): k8s.V1Pod {
  const meta = pod.metadata ?? {};
  const original = meta.name ?? 'pod';
  const ours = { [COPY_LABEL_SESSION]: session, [COPY_LABEL_OF]: original.slice(0, 63).replace(/[-.]+$/, '') };
  const labels: Record<string, string> = scaleDown ? { ...meta.labels } : {};
  for (const l of CONTROLLER_LABELS) delete labels[l];
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta.annotations ?? {})) if (!DROPPED_ANNOTATIONS.test(k)) annotations[k] = v;
  const spec = structuredClone(pod.spec!);
  // The scheduler places the copy; ephemeral containers (an agent's among them) are not part of a spec.
  delete spec.nodeName;
  delete spec.ephemeralContainers;
  // A StatefulSet pod's hostname/subdomain name it in the headless Service: the copy is another host.
  delete spec.hostname;
  delete spec.subdomain;
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    delete c.livenessProbe;
    delete c.readinessProbe;
    delete c.startupProbe;
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `mirrord-copy-${original.slice(0, 30).replace(/-+$/, '')}-${session}`,
      namespace: meta.namespace,
      labels: { ...labels, ...ours },
      annotations,
    },
    spec,
  };
}

/** The Deployment or StatefulSet that owns the pod (through its ReplicaSet for a Deployment). */
async function owningWorkload(kube: Kube, pod: k8s.V1Pod): Promise<{ kind: 'deployment' | 'statefulset'; name: string } | undefined> {
  const ns = pod.metadata!.namespace!;
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
  if (owner?.kind === 'StatefulSet') return { kind: 'statefulset', name: owner.name };
  if (owner?.kind !== 'ReplicaSet') return undefined;
  const rs = await call({ verb: 'get', resource: 'replicasets', namespace: ns, name: owner.name }, () =>
    kube.apps.readNamespacedReplicaSet({ name: owner.name, namespace: ns }),
  );
  const dep = rs.metadata?.ownerReferences?.find((o) => o.controller && o.kind === 'Deployment');
  return dep ? { kind: 'deployment', name: dep.name } : undefined;
}

async function readScale(kube: Kube, ns: string, w: { kind: 'deployment' | 'statefulset'; name: string }): Promise<k8s.V1Scale> {
  const a = { verb: 'get', resource: `${w.kind}s/scale`, namespace: ns, name: w.name };
  return w.kind === 'deployment'
    ? call(a, () => kube.apps.readNamespacedDeploymentScale({ name: w.name, namespace: ns }))
    : call(a, () => kube.apps.readNamespacedStatefulSetScale({ name: w.name, namespace: ns }));
}

/** Sets the workload's replica count; retried on a write conflict (a controller updated it meanwhile). */
export async function setReplicas(kube: Kube, ns: string, w: { kind: 'deployment' | 'statefulset'; name: string }, replicas: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const scale = await readScale(kube, ns, w);
    scale.spec = { replicas };
    const a = { verb: 'update', resource: `${w.kind}s/scale`, namespace: ns, name: w.name };
    try {
      if (w.kind === 'deployment') await kube.apps.replaceNamespacedDeploymentScale({ name: w.name, namespace: ns, body: scale });
      else await kube.apps.replaceNamespacedStatefulSetScale({ name: w.name, namespace: ns, body: scale });
      return;
    } catch (err) {
      if (isApiStatus(err, 409) && attempt < 5) continue;
      await call(a, () => Promise.reject(err));
    }
  }
}

export async function deletePod(kube: Kube, ns: string, name: string, log: Logger): Promise<void> {
  try {
    await kube.core.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds: 0 });
  } catch (err) {
    if (!isApiStatus(err, 404)) log.warn(`could not delete the copy pod/${name}: ${(err as Error).message}`);
  }
}

export interface KubeCopy {
  namespace: string;
  pod: string;
  container: string;
  scaled?: ScaledWorkload;
  /** Restores the workload's count (first, so the service never goes without pods), then deletes the copy. */
  release(): Promise<void>;
}

const POLL_MS = 500;

/**
 * Creates the copy, waits until its containers run, then (scale_down) scales the original workload
 * to 0: in that order, so the workload's Services are never without a pod. Everything made is
 * removed again when a step fails. `started` is told each object as soon as it exists (the watchdog).
 */
export async function copyKubePod(
  kube: Kube,
  target: KubeTarget,
  o: { session: string; scaleDown: boolean; timeoutMs: number; progress: Progress; log: Logger; started(c: Omit<KubeCopy, 'release'>): void },
): Promise<KubeCopy> {
  const ns = target.namespace;
  const pod = await call({ verb: 'get', resource: 'pods', namespace: ns, name: target.pod }, () =>
    kube.core.readNamespacedPod({ name: target.pod, namespace: ns }),
  );
  let workload: { kind: 'deployment' | 'statefulset'; name: string } | undefined;
  if (o.scaleDown) {
    workload = await owningWorkload(kube, pod);
    if (!workload) {
      throw new MirrordError(
        `feature.copy_target.scale_down: pod/${target.pod} belongs to no Deployment or StatefulSet, so there is nothing to scale down`,
        ExitCode.Config,
        'Target the workload (deployment/NAME or statefulset/NAME), or set scale_down to false',
      );
    }
  }
  const body = copyPodManifest(pod, o.session, o.scaleDown);
  const name = body.metadata!.name!;
  o.progress.update(`creating pod/${name}, a copy of pod/${target.pod}`);
  await call({ verb: 'create', resource: 'pods', namespace: ns, name }, () => kube.core.createNamespacedPod({ namespace: ns, body }));
  const copy: Omit<KubeCopy, 'release'> = { namespace: ns, pod: name, container: target.container };
  o.started(copy);
  const release = async () => {
    if (copy.scaled) {
      await setReplicas(kube, ns, copy.scaled, copy.scaled.replicas).catch((err: unknown) =>
        o.log.warn(`could not scale ${copy.scaled!.kind}/${copy.scaled!.name} back to ${copy.scaled!.replicas}: ${(err as Error).message}`),
      );
    }
    await deletePod(kube, ns, name, o.log);
  };
  try {
    await waitCopyRunning(kube, ns, name, target.container, Date.now() + o.timeoutMs, o.progress);
    if (workload) {
      const replicas = (await readScale(kube, ns, workload)).spec?.replicas ?? 1;
      copy.scaled = { ...workload, replicas };
      o.started(copy);
      o.progress.update(`scaling ${workload.kind}/${workload.name} from ${replicas} to 0 for the session`);
      await setReplicas(kube, ns, workload, 0);
    }
  } catch (err) {
    await release();
    throw err;
  }
  return { ...copy, release };
}

async function waitCopyRunning(kube: Kube, ns: string, name: string, container: string, deadline: number, progress: Progress): Promise<void> {
  for (;;) {
    const p = await call({ verb: 'get', resource: 'pods', namespace: ns, name }, () => kube.core.readNamespacedPod({ name, namespace: ns }));
    const st = p.status?.containerStatuses?.find((c) => c.name === container);
    if (p.status?.phase === 'Running' && st?.state?.running) return;
    const waiting = st?.state?.waiting?.reason ?? p.status?.conditions?.find((c) => c.status === 'False' && c.message)?.message;
    if (p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded' || ['CrashLoopBackOff', 'ErrImagePull', 'ImagePullBackOff'].includes(waiting ?? '')) {
      throw new MirrordError(
        `the copy pod/${name} did not start (${waiting ?? p.status?.phase})`,
        ExitCode.Target,
        "Check the original pod's spec with kubectl describe; set feature.copy_target to false to target it directly",
      );
    }
    if (Date.now() > deadline) {
      throw new MirrordError(
        `the copy pod/${name} was not running within the startup timeout${waiting ? ` (${waiting})` : ''}`,
        ExitCode.Target,
        'Raise agent.startup_timeout, or check the pod with kubectl describe',
      );
    }
    progress.update(`waiting for pod/${name}${waiting ? ` (${waiting})` : ''}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
