import { z } from 'zod';
import { NEEDS_OPERATOR, differs, ours, refused } from './status.js';

/**
 * Every way mirrord lets a file name its target, normalised to the target string src/target.ts
 * parses: `"deployment/api"`, `{path: "pod/x"}`, `{path: {deployment: "api", container: "c"}}`,
 * `{path: {cron_job: "x"}}` (and our lower-case `cronjob`), `{namespace: "ns"}` alone (targetless
 * in that namespace), `"targetless"`. Label selectors (`label/...`, `{labels: {...}}`) need mirrord's
 * operator: refused here with the key path.
 */

const REPLICASET = 'parsed; a session then stops at start (no ReplicaSet lookup here yet): target its pod or deployment';

/** Object keys of mirrord's `Target` enum (snake case in its files) and the string prefix each stands for. */
const OBJECT_KINDS: Record<string, string> = {
  deployment: 'deployment',
  pod: 'pod',
  rollout: 'rollout',
  job: 'job',
  cron_job: 'cronjob',
  cronjob: 'cronjob',
  stateful_set: 'statefulset',
  statefulset: 'statefulset',
  service: 'service',
  replica_set: 'replicaset',
  replicaset: 'replicaset',
};

/** The spellings mirrord itself takes; the lower-case others are ours, matching the string prefixes. */
const MIRRORD_KEYS = new Set(['deployment', 'pod', 'rollout', 'job', 'cron_job', 'stateful_set', 'service', 'replica_set']);

const kindObjects = Object.entries(OBJECT_KINDS).map(([key, prefix]) =>
  z
    .strictObject({
      [key]: z
        .string()
        .min(1)
        .describe(`Name of the ${prefix} (mirrord's object form).`)
        .meta(!MIRRORD_KEYS.has(key) ? ours : prefix === 'replicaset' ? differs(REPLICASET) : {}),
      container: z.string().optional().describe('Container of the pod (default: as for the string form).'),
    })
    .transform((o) => `${prefix}/${o[key] as string}${o.container ? `/container/${o.container}` : ''}`),
);

/** Becomes a `label/...` string, refused below with the other label form (inside a union a refusal would read "wrong type"). */
const labelObject = z
  .strictObject({
    labels: z
      .record(z.string(), z.string())
      .describe('mirrord: pods chosen by their labels.')
      .meta(refused(`label targets: ${NEEDS_OPERATOR}`)),
    container: z.string().optional().describe('Container of the pod (default: as for the string form).'),
  })
  .transform(
    (o) =>
      `label/${Object.entries(o.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
  );

/** The string form, with mirrord's `deploy/` alias written out. */
const targetString = z.string().transform((s) => s.trim().replace(/^deploy\//, 'deployment/'));

function refuseLabels(v: string | { path?: string } | undefined, ctx: z.RefinementCtx): void {
  const text = typeof v === 'string' ? v : v?.path;
  if (text?.startsWith('label/')) ctx.addIssue({ code: 'custom', message: `label targets: ${NEEDS_OPERATOR}`, path: typeof v === 'string' ? [] : ['path'] });
}

const targetPath = z
  .union([targetString, ...kindObjects, labelObject])
  .describe(
    "The target string (docker/NAME, pod/NAME[/container/C], deployment/NAME, deploy/NAME, statefulset/, rollout/, job/, cronjob/, service/, replicaset/, targetless) or mirrord's object form {deployment: NAME, container: C} (also pod, rollout, job, cron_job, stateful_set, service, replica_set).",
  );

export const targetSchema = z
  .union([
    targetPath,
    z.strictObject({
      path: targetPath.optional(),
      namespace: z.string().optional().describe("Kubernetes: namespace of the target (-n wins; default: the kube context's namespace, then default)."),
    }),
  ])
  .superRefine(refuseLabels)
  .optional()
  .describe(
    "The target: docker/NAME_OR_ID, pod/NAME[/container/C], deployment/NAME (or deploy/NAME), ..., or targetless (-t wins); or {path, namespace}, where path may be mirrord's object form. No target (or {namespace} alone) is targetless.",
  )
  .meta(differs('replicaset/ targets are parsed, then refused at session start (no ReplicaSet lookup here yet); label/ targets need the operator.'));
