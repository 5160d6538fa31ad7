/**
 * Every target string a namespace offers (`mirrord ls`), for people and for IDE pickers: running
 * pods (one entry per container when they have several), then the workloads that have a ready pod.
 */
import type * as k8s from '@kubernetes/client-node';
import { call, isApiStatus, type Kube } from './client.js';
import { MESH_CONTAINERS, isPodReady } from './resolve.js';

export async function listKubeTargets(kube: Kube, namespace: string): Promise<string[]> {
  const ns = namespace;
  const at = { namespace: ns };
  const [pods, deployments, statefulsets, jobs, cronjobs, services, rollouts] = await Promise.all([
    call({ verb: 'list', resource: 'pods', ...at }, () => kube.core.listNamespacedPod(at), kube.server),
    call({ verb: 'list', resource: 'deployments', ...at }, () => kube.apps.listNamespacedDeployment(at), kube.server),
    call({ verb: 'list', resource: 'statefulsets', ...at }, () => kube.apps.listNamespacedStatefulSet(at), kube.server),
    call({ verb: 'list', resource: 'jobs', ...at }, () => kube.batch.listNamespacedJob(at), kube.server),
    call({ verb: 'list', resource: 'cronjobs', ...at }, () => kube.batch.listNamespacedCronJob(at), kube.server),
    call({ verb: 'list', resource: 'services', ...at }, () => kube.core.listNamespacedService(at), kube.server),
    // Argo Rollouts is optional: no CRD (404) or no right to read it means no rollouts to offer.
    kube.custom
      .listNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: ns, plural: 'rollouts' })
      .then((r) => (r as { items?: Array<{ metadata?: k8s.V1ObjectMeta; spec?: { selector?: k8s.V1LabelSelector } }> }).items ?? [])
      .catch((err: unknown) => {
        if (isApiStatus(err, 404) || isApiStatus(err, 403)) return [];
        throw err;
      }),
  ]);
  const running = pods.items.filter(isPodReady);
  // Agent pods are ours, not targets.
  const targetsOf = running.filter((p) => p.metadata?.labels?.['app.kubernetes.io/name'] !== 'mirrord-agent');
  const out: string[] = [];
  for (const p of targetsOf) {
    const name = p.metadata!.name!;
    const containers = (p.spec?.containers ?? []).map((c) => c.name).filter((c) => !MESH_CONTAINERS.includes(c));
    if (containers.length <= 1) out.push(`pod/${name}`);
    else for (const c of containers) out.push(`pod/${name}/container/${c}`);
  }
  const matches = (sel: k8s.V1LabelSelector | undefined) => {
    const labels = sel?.matchLabels ?? {};
    if (Object.keys(labels).length === 0 && !sel?.matchExpressions?.length) return false;
    // matchLabels is all a picker needs; expressions are checked when the target is used.
    return targetsOf.some((p) => Object.entries(labels).every(([k, v]) => p.metadata?.labels?.[k] === v));
  };
  for (const d of deployments.items) if (matches(d.spec?.selector)) out.push(`deployment/${d.metadata!.name}`);
  for (const s of statefulsets.items) if (matches(s.spec?.selector)) out.push(`statefulset/${s.metadata!.name}`);
  for (const r of rollouts) if (matches(r.spec?.selector)) out.push(`rollout/${r.metadata!.name}`);
  for (const j of jobs.items) {
    if (j.metadata?.labels?.['app.kubernetes.io/name'] === 'mirrord-agent') continue;
    if ((j.status?.active ?? 0) > 0 && matches(j.spec?.selector)) out.push(`job/${j.metadata!.name}`);
  }
  for (const c of cronjobs.items) {
    const active = jobs.items.some((j) => j.metadata?.ownerReferences?.some((o) => o.uid === c.metadata?.uid) && (j.status?.active ?? 0) > 0);
    if (active) out.push(`cronjob/${c.metadata!.name}`);
  }
  for (const s of services.items) {
    const sel = s.spec?.selector;
    if (sel && Object.keys(sel).length && matches({ matchLabels: sel })) out.push(`service/${s.metadata!.name}`);
  }
  return out;
}
