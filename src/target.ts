import { ExitCode, MirrordError } from '../common/errors.js';

/** A parsed target string (architecture.md, "Target strings"). */
export type TargetSpec =
  | { kind: 'targetless'; namespace?: string }
  | { kind: 'docker'; container: string }
  | {
      kind: 'pod' | 'deployment' | 'statefulset' | 'rollout' | 'job' | 'cronjob' | 'service';
      name: string;
      container?: string;
      namespace?: string;
    };

const KUBE_KINDS = ['pod', 'deployment', 'statefulset', 'rollout', 'job', 'cronjob', 'service'] as const;

const USAGE = 'Use docker/NAME_OR_ID, pod/NAME[/container/C], deployment/NAME[/container/C], statefulset/, rollout/, job/, cronjob/, service/ or targetless';

/** Kinds mirrord's files may name that no platform here can run yet: parsed, then refused at session start. */
const NOT_RUNNABLE: Record<string, string> = {
  replicaset: 'target a pod of the ReplicaSet with pod/NAME, or the Deployment that owns it with deployment/NAME',
};

export function parseTarget(text: string, namespace?: string): TargetSpec {
  const t = text.trim();
  if (t === 'targetless') return namespace ? { kind: 'targetless', namespace } : { kind: 'targetless' };
  const parts = t.split('/');
  const [kind, name, ...rest] = parts;
  if (kind === 'docker') {
    // Docker's own rule for names (IDs are hex, so they pass too); anything else never reaches
    // the engine's API as a path segment.
    if (!name || rest.length > 0 || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw badTarget(text);
    return { kind: 'docker', container: name };
  }
  if ((KUBE_KINDS as readonly string[]).includes(kind ?? '') && name) {
    if (rest.length === 0) return { kind: kind as (typeof KUBE_KINDS)[number], name, namespace };
    if (rest.length === 2 && rest[0] === 'container' && rest[1]) {
      return { kind: kind as (typeof KUBE_KINDS)[number], name, container: rest[1], namespace };
    }
  }
  const why = NOT_RUNNABLE[kind ?? ''];
  if (why && name && (rest.length === 0 || (rest.length === 2 && rest[0] === 'container' && rest[1]))) {
    throw new MirrordError(`${kind}/${name}: ${kind} targets cannot run here yet`, ExitCode.Target, why.charAt(0).toUpperCase() + why.slice(1));
  }
  throw badTarget(text);
}

function badTarget(text: string): MirrordError {
  return new MirrordError(`invalid target "${text}"`, ExitCode.Usage, USAGE);
}

export function formatTarget(t: TargetSpec): string {
  if (t.kind === 'targetless') return 'targetless';
  if (t.kind === 'docker') return `docker/${t.container}`;
  return `${t.kind}/${t.name}${t.container ? `/container/${t.container}` : ''}`;
}

/** The config's target (after -t), as a TargetSpec; `-n` wins over target.namespace. No target is targetless, as in mirrord. */
export function targetFrom(cfg: { target?: string | { path?: string; namespace?: string } }, namespace?: string): TargetSpec {
  const t = cfg.target;
  const text = (typeof t === 'string' ? t : t?.path) || 'targetless';
  return parseTarget(text, namespace ?? (typeof t === 'object' ? t.namespace : undefined));
}
