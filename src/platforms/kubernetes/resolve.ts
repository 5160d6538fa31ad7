/**
 * From a target string to one running container: workloads are resolved to a ready pod of theirs
 * (features.md, "Targets"), and the container is the named one, else the pod's
 * `kubectl.kubernetes.io/default-container`, else the first that is not a mesh sidecar.
 */
import type * as k8s from '@kubernetes/client-node';
import { closest, distance } from 'fastest-levenshtein';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import { formatTarget, type TargetSpec } from '../../target.js';
import { call, isApiStatus, type Kube } from './client.js';

export const MESH_CONTAINERS = [
  'istio-proxy',
  'istio-init',
  'linkerd-proxy',
  'linkerd-init',
  'kuma-sidecar',
  'kuma-init',
  'vault-agent',
  'vault-agent-init',
  'queue-proxy',
];

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
  if (!app)
    throw new MirrordError(`pod ${pod.metadata?.name} has only mesh containers (${names.join(', ')})`, ExitCode.Target, 'Name one with /container/NAME');
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
  return `This namespace has ${known
    .slice(0, 5)
    .map((n) => `${kind}/${n}`)
    .join(', ')}${known.length > 5 ? ', ...' : ''} (\`mirrord ls\` lists targets)`;
}

async function notFound(kind: WorkloadKind, name: string, namespace: string, list: () => Promise<string[]>): Promise<never> {
  const known = await list().catch(() => []);
  throw new MirrordError(`${kind}/${name} not found in namespace ${namespace}`, ExitCode.Target, suggestion(name, known, kind));
}

const names = (items: Array<{ metadata?: k8s.V1ObjectMeta }>) => items.map((i) => i.metadata?.name ?? '').filter(Boolean);

/** The pods a workload selects, ready ones first, newest first among those. */
async function podsFor(kube: Kube, namespace: string, selector: string, what: string): Promise<k8s.V1Pod[]> {
  if (!selector) throw new MirrordError(`${what} has no selector`, ExitCode.Target, 'Target one of its pods with pod/NAME');
  const pods = await call(
    { verb: 'list', resource: 'pods', namespace },
    () => kube.core.listNamespacedPod({ namespace, labelSelector: selector }),
    kube.server,
  );
  return pods.items.sort(
    (a, b) =>
      Number(isPodReady(b)) - Number(isPodReady(a)) || String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')),
  );
}

interface Named {
  metadata?: k8s.V1ObjectMeta;
}

/** How to read one object of a kind, and list the kind's names (for "did you mean"). */
interface KindApi<T extends Named> {
  resource: string;
  read(kube: Kube, name: string, namespace: string): Promise<T>;
  list(kube: Kube, namespace: string): Promise<{ items: Named[] }>;
}

const KINDS = {
  pod: {
    resource: 'pods',
    read: (k, name, namespace) => k.core.readNamespacedPod({ name, namespace }),
    list: (k, namespace) => k.core.listNamespacedPod({ namespace }),
  } as KindApi<k8s.V1Pod>,
  deployment: {
    resource: 'deployments',
    read: (k, name, namespace) => k.apps.readNamespacedDeployment({ name, namespace }),
    list: (k, namespace) => k.apps.listNamespacedDeployment({ namespace }),
  } as KindApi<k8s.V1Deployment>,
  statefulset: {
    resource: 'statefulsets',
    read: (k, name, namespace) => k.apps.readNamespacedStatefulSet({ name, namespace }),
    list: (k, namespace) => k.apps.listNamespacedStatefulSet({ namespace }),
  } as KindApi<k8s.V1StatefulSet>,
  job: {
    resource: 'jobs',
    read: (k, name, namespace) => k.batch.readNamespacedJob({ name, namespace }),
    list: (k, namespace) => k.batch.listNamespacedJob({ namespace }),
  } as KindApi<k8s.V1Job>,
  cronjob: {
    resource: 'cronjobs',
    read: (k, name, namespace) => k.batch.readNamespacedCronJob({ name, namespace }),
    list: (k, namespace) => k.batch.listNamespacedCronJob({ namespace }),
  } as KindApi<k8s.V1CronJob>,
  service: {
    resource: 'services',
    read: (k, name, namespace) => k.core.readNamespacedService({ name, namespace }),
    list: (k, namespace) => k.core.listNamespacedService({ namespace }),
  } as KindApi<k8s.V1Service>,
};

/** Reads `kind/name`; a missing one becomes "not found" with the closest names of the namespace. */
function readKind<K extends keyof typeof KINDS>(kube: Kube, kind: K, name: string, namespace: string): Promise<Awaited<ReturnType<(typeof KINDS)[K]['read']>>> {
  const api = KINDS[kind] as KindApi<Named>;
  return call(
    { verb: 'get', resource: api.resource, namespace, name },
    () => api.read(kube, name, namespace),
    kube.server,
    () => notFound(kind, name, namespace, async () => names((await api.list(kube, namespace)).items)),
  ) as Promise<Awaited<ReturnType<(typeof KINDS)[K]['read']>>>;
}

async function workloadSelector(kube: Kube, spec: Extract<TargetSpec, { name: string }>, namespace: string): Promise<string> {
  const { name } = spec;
  const ns = namespace;
  switch (spec.kind) {
    case 'deployment':
    case 'statefulset':
    case 'job':
      return selectorText((await readKind(kube, spec.kind, name, ns)).spec?.selector);
    case 'cronjob': {
      const cj = await readKind(kube, 'cronjob', name, ns);
      const jobs = await call({ verb: 'list', resource: 'jobs', namespace: ns }, () => kube.batch.listNamespacedJob({ namespace: ns }), kube.server);
      const mine = jobs.items
        .filter((j) => j.metadata?.ownerReferences?.some((o) => o.kind === 'CronJob' && o.uid === cj.metadata?.uid) && (j.status?.active ?? 0) > 0)
        .sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')));
      const newest = mine[0];
      if (!newest)
        throw new MirrordError(
          `cronjob/${name} has no running job now`,
          ExitCode.Target,
          'Wait for its next run, or trigger one: kubectl create job --from=cronjob/' + name + ' NAME',
        );
      return selectorText(newest.spec?.selector);
    }
    case 'service': {
      const s = await readKind(kube, 'service', name, ns);
      const sel = s.spec?.selector ?? {};
      if (Object.keys(sel).length === 0)
        throw new MirrordError(`service/${name} has no selector (its endpoints are managed by hand)`, ExitCode.Target, 'Target a pod with pod/NAME');
      return selectorText({ matchLabels: sel });
    }
    case 'rollout': {
      let r: { spec?: { selector?: k8s.V1LabelSelector } };
      try {
        r = (await kube.custom.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: ns, plural: 'rollouts', name })) as typeof r;
      } catch (err) {
        if (isApiStatus(err, 404)) {
          const list = await kube.custom
            .listNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: ns, plural: 'rollouts' })
            .catch((e: unknown) => e);
          if (isApiStatus(list, 404)) {
            throw new MirrordError(
              `rollout/${name}: Argo Rollouts is not installed in this cluster (no rollouts.argoproj.io resource)`,
              ExitCode.Target,
              "Target the rollout's pods with pod/NAME, or install Argo Rollouts",
            );
          }
          const items = (list as { items?: Array<{ metadata?: k8s.V1ObjectMeta }> })?.items ?? [];
          return notFound('rollout', name, ns, async () => names(items));
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
    throw new MirrordError(
      `${what}: container ${container} of pod ${podName} is not running (${why})`,
      ExitCode.Target,
      'Wait until it runs (kubectl get pod ' + podName + '), then try again',
    );
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
    const pod = await readKind(kube, 'pod', spec.name, namespace);
    return toTarget(pod, spec.container, what);
  }
  const selector = await workloadSelector(kube, spec, namespace);
  const pods = await podsFor(kube, namespace, selector, what);
  const ready = pods.find(isPodReady);
  if (!ready) {
    throw new MirrordError(
      `${what} in namespace ${namespace} has no ready pod${
        pods.length
          ? ` (${pods.length} not ready: ${pods
              .map((p) => `${p.metadata?.name} ${p.status?.phase}`)
              .slice(0, 3)
              .join(', ')})`
          : ''
      }`,
      ExitCode.Target,
      'Wait until a pod is ready (kubectl get pods -l ' + selector + '), or target a pod with pod/NAME',
    );
  }
  return toTarget(ready, spec.container, what);
}
