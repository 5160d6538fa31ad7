/**
 * From a target string to one running container: workloads are resolved to a ready pod of theirs
 * (features.md, "Targets"), and the container is the named one, else the pod's
 * `kubectl.kubernetes.io/default-container`, else the first that is not a mesh sidecar.
 */
import type * as k8s from '@kubernetes/client-node';
import { closest, distance } from 'fastest-levenshtein';
import { ExitCode, MirrordError } from '../../errors.js';
import { formatTarget, type TargetSpec } from '../../target.js';
import { call, isApiStatus, type Kube } from './client.js';

export const MESH_CONTAINERS = ['istio-proxy', 'istio-init', 'linkerd-proxy', 'linkerd-init', 'kuma-sidecar', 'kuma-init', 'vault-agent', 'vault-agent-init', 'queue-proxy'];

export interface KubeTarget {
  namespace: string;
  pod: string;
  container: string;
  /** `containerd://<id>` as the pod status has it. */
  containerId: string;
  nodeName: string;
  /** The pod's own uid (ephemeral containers are patched onto exactly this pod). */
  podUid: string;
  display: string;
}

type WorkloadKind = Exclude<TargetSpec['kind'], 'docker' | 'targetless'>;

/** A LabelSelector as the `labelSelector` query text. */
export function selectorText(sel: k8s.V1LabelSelector | undefined): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const e of sel?.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

export function isPodReady(p: k8s.V1Pod): boolean {
  return !p.metadata?.deletionTimestamp && p.status?.phase === 'Running' && !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** The container a session attaches to (see the file comment). */
export function chooseContainer(pod: k8s.V1Pod, wanted?: string): string {
  const names = (pod.spec?.containers ?? []).map((c) => c.name);
  if (wanted) {
    if (names.includes(wanted)) return wanted;
    throw new MirrordError(`pod ${pod.metadata?.name} has no container "${wanted}"`, ExitCode.Target, `Its containers: ${names.join(', ')}`);
  }
  const annotated = pod.metadata?.annotations?.['kubectl.kubernetes.io/default-container'];
  if (annotated && names.includes(annotated)) return annotated;
  const app = names.find((n) => !MESH_CONTAINERS.includes(n));
  if (!app) throw new MirrordError(`pod ${pod.metadata?.name} has only mesh containers (${names.join(', ')})`, ExitCode.Target, 'Name one with /container/NAME');
  return app;
}

function suggestion(name: string, known: string[], kind: string): string {
  if (known.length === 0) return `There is no ${kind} in this namespace; pass -n NAMESPACE, or list targets with \`mirrord ls\``;
  const near = known.filter((k) => distance(name, k) <= Math.max(2, Math.floor(name.length / 3)) || k.startsWith(name));
  if (near.length) {
    const best = closest(name, near);
    const list = [best, ...near.filter((n) => n !== best)].slice(0, 3);
    return `Did you mean ${list.map((n) => `${kind}/${n}`).join(', ')}? (\`mirrord ls\` lists targets)`;
  }
  return `This namespace has ${known.slice(0, 5).map((n) => `${kind}/${n}`).join(', ')}${known.length > 5 ? ', ...' : ''} (\`mirrord ls\` lists targets)`;
}

async function notFound(kube: Kube, kind: WorkloadKind, name: string, namespace: string, list: () => Promise<string[]>): Promise<never> {
  const known = await list().catch(() => []);
  throw new MirrordError(`${kind}/${name} not found in namespace ${namespace}`, ExitCode.Target, suggestion(name, known, kind));
}

const names = (items: Array<{ metadata?: k8s.V1ObjectMeta }>) => items.map((i) => i.metadata?.name ?? '').filter(Boolean);

/** The pods a workload selects, ready ones first, newest first among those. */
async function podsFor(kube: Kube, namespace: string, selector: string, what: string): Promise<k8s.V1Pod[]> {
  if (!selector) throw new MirrordError(`${what} has no selector`, ExitCode.Target, 'Target one of its pods with pod/NAME');
  const pods = await call({ verb: 'list', resource: 'pods', namespace }, () => kube.core.listNamespacedPod({ namespace, labelSelector: selector }), kube.server);
  return pods.items.sort((a, b) => Number(isPodReady(b)) - Number(isPodReady(a)) || String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')));
}

async function workloadSelector(kube: Kube, spec: Extract<TargetSpec, { name: string }>, namespace: string): Promise<string> {
  const { name } = spec;
  const ns = namespace;
  switch (spec.kind) {
    case 'deployment': {
      const d = await call({ verb: 'get', resource: 'deployments', namespace: ns, name }, () => kube.apps.readNamespacedDeployment({ name, namespace: ns }), kube.server, () =>
        notFound(kube, 'deployment', name, ns, async () => names((await kube.apps.listNamespacedDeployment({ namespace: ns })).items)),
      );
      return selectorText(d.spec?.selector);
    }
    case 'statefulset': {
      const s = await call({ verb: 'get', resource: 'statefulsets', namespace: ns, name }, () => kube.apps.readNamespacedStatefulSet({ name, namespace: ns }), kube.server, () =>
        notFound(kube, 'statefulset', name, ns, async () => names((await kube.apps.listNamespacedStatefulSet({ namespace: ns })).items)),
      );
      return selectorText(s.spec?.selector);
    }
    case 'job': {
      const j = await call({ verb: 'get', resource: 'jobs', namespace: ns, name }, () => kube.batch.readNamespacedJob({ name, namespace: ns }), kube.server, () =>
        notFound(kube, 'job', name, ns, async () => names((await kube.batch.listNamespacedJob({ namespace: ns })).items)),
      );
      return selectorText(j.spec?.selector);
    }
    case 'cronjob': {
      const cj = await call({ verb: 'get', resource: 'cronjobs', namespace: ns, name }, () => kube.batch.readNamespacedCronJob({ name, namespace: ns }), kube.server, () =>
        notFound(kube, 'cronjob', name, ns, async () => names((await kube.batch.listNamespacedCronJob({ namespace: ns })).items)),
      );
      const jobs = await call({ verb: 'list', resource: 'jobs', namespace: ns }, () => kube.batch.listNamespacedJob({ namespace: ns }), kube.server);
      const mine = jobs.items
        .filter((j) => j.metadata?.ownerReferences?.some((o) => o.kind === 'CronJob' && o.uid === cj.metadata?.uid) && (j.status?.active ?? 0) > 0)
        .sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')));
      const newest = mine[0];
      if (!newest) throw new MirrordError(`cronjob/${name} has no running job now`, ExitCode.Target, 'Wait for its next run, or trigger one: kubectl create job --from=cronjob/' + name + ' NAME');
      return selectorText(newest.spec?.selector);
    }
    case 'service': {
      const s = await call({ verb: 'get', resource: 'services', namespace: ns, name }, () => kube.core.readNamespacedService({ name, namespace: ns }), kube.server, () =>
        notFound(kube, 'service', name, ns, async () => names((await kube.core.listNamespacedService({ namespace: ns })).items)),
      );
      const sel = s.spec?.selector ?? {};
      if (Object.keys(sel).length === 0) throw new MirrordError(`service/${name} has no selector (its endpoints are managed by hand)`, ExitCode.Target, 'Target a pod with pod/NAME');
      return selectorText({ matchLabels: sel });
    }
    case 'rollout': {
      let r: { spec?: { selector?: k8s.V1LabelSelector } };
      try {
        r = (await kube.custom.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: ns, plural: 'rollouts', name })) as typeof r;
      } catch (err) {
        if (isApiStatus(err, 404)) {
          const list = await kube.custom.listNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: ns, plural: 'rollouts' }).catch((e: unknown) => e);
          if (isApiStatus(list, 404)) {
            throw new MirrordError(`rollout/${name}: Argo Rollouts is not installed in this cluster (no rollouts.argoproj.io resource)`, ExitCode.Target, 'Target the rollout\'s pods with pod/NAME, or install Argo Rollouts');
          }
          const items = ((list as { items?: Array<{ metadata?: k8s.V1ObjectMeta }> })?.items ?? []);
          return notFound(kube, 'rollout', name, ns, async () => names(items));
        }
        return call({ verb: 'get', resource: 'rollouts.argoproj.io', namespace: ns, name }, () => Promise.reject(err), kube.server);
      }
      return selectorText(r.spec?.selector);
    }
    default:
      throw new MirrordError(`unsupported target kind ${spec.kind}`, ExitCode.Usage);
  }
}

function toTarget(pod: k8s.V1Pod, wanted: string | undefined, what: string): KubeTarget {
  const container = chooseContainer(pod, wanted);
  const status = pod.status?.containerStatuses?.find((s) => s.name === container);
  const podName = pod.metadata?.name ?? '';
  if (!status?.state?.running || !status.containerID) {
    const why = status?.state?.waiting?.reason ?? status?.state?.terminated?.reason ?? pod.status?.phase ?? 'not started';
    throw new MirrordError(`${what}: container ${container} of pod ${podName} is not running (${why})`, ExitCode.Target, 'Wait until it runs (kubectl get pod ' + podName + '), then try again');
  }
  return {
    namespace: pod.metadata?.namespace ?? '',
    pod: podName,
    container,
    containerId: status.containerID,
    nodeName: pod.spec?.nodeName ?? '',
    podUid: pod.metadata?.uid ?? '',
    display: `${what === `pod/${podName}` ? what : `${what} (pod/${podName})`}${wanted || (pod.spec?.containers?.length ?? 0) > 1 ? ` container ${container}` : ''}`,
  };
}

export async function resolveKubeTarget(kube: Kube, spec: Extract<TargetSpec, { name: string }>): Promise<KubeTarget> {
  const namespace = spec.namespace ?? kube.defaultNamespace;
  const what = formatTarget({ ...spec, container: undefined });
  if (spec.kind === 'pod') {
    const pod = await call({ verb: 'get', resource: 'pods', namespace, name: spec.name }, () => kube.core.readNamespacedPod({ name: spec.name, namespace }), kube.server, () =>
      notFound(kube, 'pod', spec.name, namespace, async () => names((await kube.core.listNamespacedPod({ namespace })).items)),
    );
    return toTarget(pod, spec.container, what);
  }
  const selector = await workloadSelector(kube, spec, namespace);
  const pods = await podsFor(kube, namespace, selector, what);
  const ready = pods.find(isPodReady);
  if (!ready) {
    throw new MirrordError(
      `${what} in namespace ${namespace} has no ready pod${pods.length ? ` (${pods.length} not ready: ${pods.map((p) => `${p.metadata?.name} ${p.status?.phase}`).slice(0, 3).join(', ')})` : ''}`,
      ExitCode.Target,
      'Wait until a pod is ready (kubectl get pods -l ' + selector + '), or target a pod with pod/NAME',
    );
  }
  return toTarget(ready, spec.container, what);
}
