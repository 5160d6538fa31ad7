/**
 * The Kubernetes objects an agent runs in, as plain data (unit-tested without a cluster):
 *   - job mode: a Job whose pod lands on the target's node with hostPID and enters the target's
 *     network namespace from there (agent/src/kube/listener.ts);
 *   - ephemeral mode: an ephemeral container in the target pod, in the target container's PID namespace;
 *   - targetless: a Job anywhere in the namespace, with no privileges at all.
 * Capabilities are the fewest each mode needs; `agent.privileged` replaces them with privileged.
 */
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { KubeTarget } from './resolve.js';
import { agentKeysEnv } from '../../config/agent-schema.js';

export const AGENT_CONTAINER = 'mirrord-agent';
export const LABEL_APP = 'app.kubernetes.io/name';
export const LABEL_SESSION = 'dev.mirrord/session';
export const ANNOTATION_OWNER = 'dev.mirrord/owner';
export const ANNOTATION_TARGET = 'dev.mirrord/target';
/** A shared agent's kind (image and capabilities), as on Docker: sessions join only their own kind. */
export const LABEL_SHARED = 'dev.mirrord/shared';
/** The target pod's uid on a shared agent: sessions of that target find it by label. */
export const LABEL_TARGET_UID = 'dev.mirrord/target-uid';
/** The owner of a shared agent: no session's (no reaper judges it); it leaves after agent.ttl. */
export const SHARED_OWNER = 'shared';

export interface KubeAgentSettings {
  image: string;
  image_pull_policy?: 'Always' | 'IfNotPresent' | 'Never';
  image_pull_secrets?: string[];
  ttl: number;
  privileged: boolean;
  log_level: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  tolerations?: k8s.V1Toleration[];
  resources?: k8s.V1ResourceRequirements;
  /** Targetless only: a targeted agent is bound to its target's node. */
  node_selector?: Record<string, string>;
  service_account?: string;
  priority_class?: string;
  /** mirrord's {seccomp_profile, app_armor_profile}, snake or camel case inside. */
  security_context?: Record<string, unknown>;
  disabled_capabilities?: string[];
  /** The keys the agent honours itself, passed in its environment (agentKeysEnv). */
  json_log?: boolean;
  communication_timeout?: number;
  flush_connections?: boolean;
  metrics?: string;
  nftables?: boolean;
  dns?: { timeout?: number; attempts?: number };
  /** Checked by the platform before the Job is made (platform.ts). */
  check_out_of_pods?: boolean;
  /** agent.disable_mesh_sidecar_injection (default true, as mirrord): the labels and annotations below. */
  disable_mesh_sidecar_injection?: boolean;
  /** agent.max_body_buffer_*: passed in the environment too (agentKeysEnv). */
  max_body_buffer_size?: number;
  max_body_buffer_timeout?: number;
  /** agent.jaq_time_limit: likewise. */
  jaq_time_limit?: number;
}

/** What keeps the service meshes that inject proxies into pods (Istio, Linkerd, Kuma) away from the agent pod. */
export const NO_MESH_LABELS: Record<string, string> = { 'sidecar.istio.io/inject': 'false' };
export const NO_MESH_ANNOTATIONS: Record<string, string> = {
  'sidecar.istio.io/inject': 'false',
  'linkerd.io/inject': 'disabled',
  'kuma.io/sidecar-injection': 'disabled',
};

export interface AgentSpecInput {
  session: string;
  token: string;
  port: number;
  namespace: string;
  agent: KubeAgentSettings;
  /** Absent for targetless sessions. */
  target?: KubeTarget;
  /** How long the listener waits for its first client (the CLI gives up after agent.startup_timeout). */
  firstClientSeconds?: number;
  fsWrite: boolean;
  /** agent.shared in job mode: the agent's kind (sharedKey); the job serves every session of the target. */
  sharedKey?: string;
}

/** Seconds a finished agent Job stays before Kubernetes deletes it (and its pod). */
export const JOB_TTL_AFTER_FINISHED = 1;

function env(i: AgentSpecInput, mode: 'job' | 'ephemeral' | 'targetless'): k8s.V1EnvVar[] {
  const e: Record<string, string> = {
    MIRRORD_AGENT_MODE: 'listen',
    MIRRORD_AGENT_PORT: String(i.port),
    MIRRORD_AGENT_TOKEN: i.token,
    MIRRORD_AGENT_SESSION: i.session,
    MIRRORD_AGENT_TTL: String(i.agent.ttl),
    MIRRORD_AGENT_FIRST_CLIENT_TIMEOUT: String(i.firstClientSeconds ?? 60),
    MIRRORD_AGENT_LOG: i.agent.log_level,
  };
  Object.assign(e, agentKeysEnv(i.agent));
  if (mode === 'job') e.MIRRORD_AGENT_TARGET_CONTAINER_ID = i.target!.containerId;
  if (i.sharedKey) e.MIRRORD_AGENT_SHARED = '1';
  if (mode === 'ephemeral') e.MIRRORD_AGENT_TARGET_PID = '1';
  if (mode === 'targetless') e.MIRRORD_AGENT_TARGETLESS = '1';
  return Object.entries(e).map(([name, value]) => ({ name, value }));
}

export function capabilities(mode: 'job' | 'ephemeral' | 'targetless', fsWrite: boolean): string[] {
  if (mode === 'targetless') return [];
  // NET_ADMIN/NET_RAW: iptables for incoming traffic; SYS_PTRACE: /proc/PID/{root,environ,ns};
  // DAC_READ_SEARCH: reading the target's files whatever their modes.
  const caps = ['NET_ADMIN', 'NET_RAW', 'SYS_PTRACE', 'DAC_READ_SEARCH'];
  // setns(2) into another network namespace needs CAP_SYS_ADMIN; only job mode enters one.
  if (mode === 'job') caps.push('SYS_ADMIN');
  if (fsWrite) caps.push('DAC_OVERRIDE');
  return caps;
}

function securityContext(i: AgentSpecInput, mode: 'job' | 'ephemeral' | 'targetless'): k8s.V1SecurityContext {
  if (i.agent.privileged) return { privileged: true, runAsUser: 0 };
  // agent.disabled_capabilities: the features needing one then fail in the agent with EPERM, as in mirrord.
  const off = new Set((i.agent.disabled_capabilities ?? []).map((c) => c.toUpperCase().replace(/^CAP_/, '')));
  return {
    runAsUser: 0,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'], add: capabilities(mode, i.fsWrite).filter((c) => !off.has(c)) },
  };
}

/** agent.security_context: the pod's seccomp and AppArmor profiles, from mirrord's snake_case or the API's camelCase. */
export function podProfiles(sc: Record<string, unknown> | undefined): k8s.V1PodSecurityContext | undefined {
  if (!sc) return undefined;
  const profile = (v: unknown) => {
    if (!v || typeof v !== 'object') return undefined;
    const o = v as Record<string, unknown>;
    const type = o.type as string | undefined;
    const localhost = (o.localhost_profile ?? o.localhostProfile) as string | undefined;
    return type ? { type, ...(localhost ? { localhostProfile: localhost } : {}) } : undefined;
  };
  const seccompProfile = profile(sc.seccomp_profile ?? sc.seccompProfile);
  const appArmorProfile = profile(sc.app_armor_profile ?? sc.appArmorProfile);
  if (!seccompProfile && !appArmorProfile) return undefined;
  return { ...(seccompProfile ? { seccompProfile } : {}), ...(appArmorProfile ? { appArmorProfile } : {}) };
}

function labels(i: AgentSpecInput): Record<string, string> {
  const shared: Record<string, string> = i.sharedKey && i.target ? { [LABEL_SHARED]: i.sharedKey, [LABEL_TARGET_UID]: i.target.podUid } : {};
  const mesh = i.agent.disable_mesh_sidecar_injection === false ? {} : NO_MESH_LABELS;
  return { ...mesh, ...i.agent.labels, [LABEL_APP]: 'mirrord-agent', [LABEL_SESSION]: i.session, ...shared };
}

/** The shared agent's Job name: one per target container and kind, so two sessions starting at once make one. */
export function sharedJobName(target: KubeTarget, key: string): string {
  return `mirrord-agent-shared-${createHash('sha256').update(`${target.podUid}/${target.container}/${key}`).digest('hex').slice(0, 16)}`;
}

function annotations(i: AgentSpecInput): Record<string, string> {
  return {
    ...(i.agent.disable_mesh_sidecar_injection === false ? {} : NO_MESH_ANNOTATIONS),
    ...i.agent.annotations,
    [ANNOTATION_OWNER]: i.sharedKey ? SHARED_OWNER : `${os.userInfo().username}@${os.hostname()}:${process.pid}`,
    ...(i.target ? { [ANNOTATION_TARGET]: `pod/${i.target.pod}/container/${i.target.container}` } : {}),
  };
}

const COMMAND = ['node', '/opt/mirrord/agent.mjs'];

export function agentJob(i: AgentSpecInput): k8s.V1Job {
  const mode = i.target ? 'job' : 'targetless';
  const container: k8s.V1Container = {
    name: AGENT_CONTAINER,
    image: i.agent.image,
    imagePullPolicy: i.agent.image_pull_policy ?? 'IfNotPresent',
    command: COMMAND,
    env: env(i, mode),
    securityContext: securityContext(i, mode),
    resources: i.agent.resources ?? { requests: { cpu: '10m', memory: '50Mi' }, limits: { memory: '512Mi' } },
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: i.sharedKey && i.target ? sharedJobName(i.target, i.sharedKey) : `mirrord-agent-${i.session}`,
      namespace: i.namespace,
      labels: labels(i),
      annotations: annotations(i),
    },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: JOB_TTL_AFTER_FINISHED,
      template: {
        metadata: { labels: labels(i), annotations: annotations(i) },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 5,
          ...(i.target ? { nodeName: i.target.nodeName, hostPID: true } : { nodeSelector: i.agent.node_selector }),
          serviceAccountName: i.agent.service_account,
          priorityClassName: i.agent.priority_class,
          securityContext: podProfiles(i.agent.security_context),
          // An agent must run wherever its target runs, tainted nodes included.
          tolerations: i.agent.tolerations ?? (i.target ? [{ operator: 'Exists' }] : undefined),
          imagePullSecrets: i.agent.image_pull_secrets?.map((name) => ({ name })),
          containers: [container],
        },
      },
    },
  };
}

/**
 * agent.check_out_of_pods: the node's allocatable pods against the pods bound to it that have not
 * finished. A line saying why the agent cannot fit, or undefined when it can (or the node does not say).
 */
export function outOfPods(node: k8s.V1Node, podsOnNode: number): string | undefined {
  const name = node.metadata?.name ?? '(unnamed)';
  const text = node.status?.allocatable?.pods;
  const allocatable = text === undefined ? NaN : Number(text);
  if (!Number.isFinite(allocatable)) return undefined;
  if (podsOnNode < allocatable) return undefined;
  return `node ${name} has no room for the agent pod: ${podsOnNode} pods on it, ${allocatable} allocatable (agent.check_out_of_pods)`;
}

export function agentEphemeralContainer(i: AgentSpecInput): k8s.V1EphemeralContainer {
  return {
    name: `mirrord-agent-${i.session}`,
    image: i.agent.image,
    imagePullPolicy: i.agent.image_pull_policy ?? 'IfNotPresent',
    command: COMMAND,
    env: env(i, 'ephemeral'),
    securityContext: securityContext(i, 'ephemeral'),
    targetContainerName: i.target!.container,
  };
}
