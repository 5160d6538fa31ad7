/**
 * Kubernetes targets: pods and workloads resolved through the API server, the agent started in job
 * mode (default), ephemeral mode (`agent.ephemeral`) or targetless, and reached over port-forward.
 * Nothing needs removing afterwards: a job's listener exits once its client is gone, the Job then
 * finishes and expires (ttlSecondsAfterFinished), and an ephemeral container simply ends.
 */
import { createHash, randomInt } from 'node:crypto';
import type * as k8s from '@kubernetes/client-node';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { AP_KUBE_STREAM_WINDOW } from '../../../common/protocol/agent/index.js';
import type { TargetSpec } from '../../target.js';
import { agentImageTag } from '../../images/recipes.js';
import type { AgentHandle, AgentStartOptions, ResolvedTarget, TargetPlatform } from '../platform.js';
import {
  AGENT_CONTAINER,
  ANNOTATION_OWNER,
  LABEL_APP,
  LABEL_SESSION,
  LABEL_SHARED,
  LABEL_TARGET_UID,
  agentEphemeralContainer,
  agentJob,
  type KubeAgentSettings,
  outOfPods,
} from './agent-spec.js';
import { ownerGone } from '../owner.js';
import { apiError, call, connectKube, isApiStatus, type Kube, type KubeSettings } from './client.js';
import { connectAgent } from './port-forward.js';
import { resolveKubeTarget, type KubeTarget } from './resolve.js';
import { contextShapeOf } from '../../images/local-cluster.js';
import { readableAgentLine } from '../agent-log.js';

/** The port a Job-mode agent's listener takes on its own pod's loopback (`mirrord status` dials it too). */
export const JOB_AGENT_PORT = 47000;
export interface KubeAgentConfig extends Omit<KubeAgentSettings, 'image'> {
  image?: string;
  namespace?: string;
  ephemeral: boolean;
}

const PULL_FAILURES = ['ErrImagePull', 'ImagePullBackOff', 'ErrImageNeverPull', 'InvalidImageName'];
const START_FAILURES = ['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError', 'CrashLoopBackOff'];

/** Where the agent runs, as far as waiting for it is concerned. */
interface AgentPlace {
  namespace: string;
  session: string;
  /** How the agent's pod is found: its session's label, or a shared agent's kind and target. */
  selector: string;
  /** The pod to port-forward to (found once the Job made it). */
  pod?: string;
  container: string;
  ephemeral: boolean;
  /** Why the pod is not running yet, when the scheduler says (shown with the progress). */
  note?: string;
  /** Set once the pod is bound to a node: port-forward can be tried from then on. */
  scheduled?: boolean;
  /** After a pull failure: loads the image into the cluster when it can (src/images/deliver.ts); true once loaded. */
  deliver?: (image: string) => Promise<boolean>;
}

/** The image loaded into the cluster by the CLI itself, when it can (never throws: false means it could not). */
async function loadAgentImage(kube: Kube, image: string, opts: AgentStartOptions): Promise<boolean> {
  const { loadAfterPullFailure } = await import('../../images/deliver.js');
  const { createDocker } = await import('../docker/client.js');
  return loadAfterPullFailure(createDocker(), image, contextShapeOf(kube.kc), { progress: opts.progress, log: opts.log }).catch((err: unknown) => {
    opts.log.warn((err as Error).message);
    return false;
  });
}

/** agent.check_out_of_pods: fails when the node already holds as many pods as it can. */
export async function checkNodeRoom(kube: Kube, nodeName: string, opts: Pick<AgentStartOptions, 'progress' | 'log'>): Promise<void> {
  opts.progress.update(`checking that node ${nodeName} has room for the agent pod`);
  let node: k8s.V1Node;
  let pods: number;
  try {
    node = await kube.core.readNode({ name: nodeName });
    const list = await kube.core.listPodForAllNamespaces({
      fieldSelector: `spec.nodeName=${nodeName},status.phase!=Succeeded,status.phase!=Failed`,
    });
    pods = list.items.length;
  } catch (err) {
    // Nodes are cluster-scoped: a namespaced Role cannot read them. Said, then carried on.
    opts.log.warn(
      `agent.check_out_of_pods: cannot check node ${nodeName} (${apiError(err, { verb: 'get', resource: 'nodes', name: nodeName }, kube.server).message})`,
    );
    return;
  }
  const full = outOfPods(node, pods);
  opts.log.info(`agent.check_out_of_pods: node ${nodeName}: ${pods} pods, ${node.status?.allocatable?.pods ?? '?'} allocatable`);
  if (full) {
    throw new MirrordError(full, ExitCode.Agent, 'Free a pod on that node, raise its pod limit, or set agent.ephemeral: true (an ephemeral agent adds no pod)');
  }
}

export class KubernetesPlatform implements TargetPlatform {
  readonly name = 'kubernetes';
  private kubeClient?: Kube;
  private readonly resolved = new Map<string, KubeTarget>();

  constructor(
    private readonly settings: KubeSettings,
    private readonly agent: KubeAgentConfig,
  ) {}

  private kube(): Kube {
    this.kubeClient ??= connectKube(this.settings);
    return this.kubeClient;
  }

  async resolveTarget(spec: TargetSpec): Promise<ResolvedTarget> {
    if (spec.kind === 'docker') throw new MirrordError('the Kubernetes platform cannot run docker/ targets', ExitCode.Usage);
    const kube = this.kube();
    if (spec.kind === 'targetless') {
      const namespace = this.agent.namespace ?? kube.defaultNamespace;
      // Fails early, with the usual message, when the cluster does not answer or the namespace is missing.
      await call(
        { verb: 'get', resource: 'namespaces', name: namespace },
        () => kube.core.readNamespace({ name: namespace }),
        kube.server,
        () => {
          throw new MirrordError(
            `namespace ${namespace} not found`,
            ExitCode.Target,
            'Set agent.namespace (or the kube context namespace) to an existing namespace',
          );
        },
      ).catch((err: unknown) => {
        // Reading namespaces is cluster-scoped: a namespaced Role cannot, and need not.
        if (err instanceof MirrordError && err.code === ExitCode.Platform && /RBAC denied/.test(err.message)) return;
        throw err;
      });
      return { spec, id: `targetless:${namespace}`, display: `targetless (namespace ${namespace})` };
    }
    const t = await resolveKubeTarget(kube, spec);
    const id = `${t.podUid}/${t.container}`;
    this.resolved.set(id, t);
    return { spec, id, display: t.display };
  }

  async startAgent(resolved: ResolvedTarget, opts: AgentStartOptions): Promise<AgentHandle> {
    const kube = this.kube();
    const target = this.resolved.get(resolved.id);
    const targetless = resolved.spec.kind === 'targetless';
    const namespace = targetless
      ? resolved.id.slice('targetless:'.length)
      : this.agent.ephemeral
        ? target!.namespace
        : (this.agent.namespace ?? target!.namespace);
    const ephemeral = this.agent.ephemeral && !targetless;
    // agent.shared: job mode only (an ephemeral container cannot be left behind for others).
    const shared = !!opts.shared && !ephemeral && !targetless;
    const settings: KubeAgentSettings = { ...this.agent, image: opts.image ?? this.agent.image ?? agentImageTag() };
    // Job mode: the agent pod's own loopback, any fixed port does. Ephemeral: the target pod's
    // loopback, so a random high port to stay clear of the app's.
    const port = ephemeral ? randomInt(40000, 60000) : JOB_AGENT_PORT;
    // A CLI killed while the agent starts never connects: the listener then leaves on its own.
    const firstClientSeconds = Math.ceil(opts.startupTimeoutMs / 1000) + 10;
    const key = shared
      ? createHash('sha256')
          .update(`${settings.image}|${opts.fsWrite ? 'rw' : 'ro'}`)
          .digest('hex')
          .slice(0, 16)
      : undefined;
    const input = {
      session: opts.session,
      token: opts.token,
      port,
      namespace,
      agent: settings,
      target,
      fsWrite: !!opts.fsWrite,
      firstClientSeconds,
      sharedKey: key,
    };
    const deadline = Date.now() + opts.startupTimeoutMs;
    const selector = key ? `${LABEL_SHARED}=${key},${LABEL_TARGET_UID}=${target!.podUid}` : `${LABEL_SESSION}=${opts.session}`;
    const place: AgentPlace = { namespace, session: opts.session, selector, container: AGENT_CONTAINER, ephemeral };
    let loaded: Promise<boolean> | undefined;
    place.deliver = (image) => (loaded ??= loadAgentImage(kube, image, opts));

    if (shared) {
      // The target's live shared agent of this kind, or a new one (the Job's name is the same for
      // every session: two starting at once make one).
      void this.reapNamespace(kube, namespace, opts.log);
      const live = await this.livePod(kube, place);
      if (live) {
        place.pod = live;
        opts.progress.update(`joining the shared agent pod/${live}`);
      } else {
        if (this.agent.check_out_of_pods) await checkNodeRoom(kube, target!.nodeName, opts);
        const job = agentJob(input);
        opts.progress.update(`creating shared agent job ${job.metadata!.name} in namespace ${namespace}`);
        try {
          await kube.batch.createNamespacedJob({ namespace, body: job });
        } catch (err) {
          // 409: another session is creating it right now, or its last one just finished (the Job
          // is removed a second after): wait for a live pod either way.
          if (!isApiStatus(err, 409)) throw apiError(err, { verb: 'create', resource: 'jobs', namespace }, kube.server);
        }
      }
    } else if (ephemeral) {
      const ec = agentEphemeralContainer(input);
      place.pod = target!.pod;
      place.container = ec.name;
      opts.progress.update(`adding agent container to pod/${target!.pod}`);
      await this.addEphemeralContainer(kube, target!, ec);
    } else {
      // Best effort and not waited for: Jobs left by CLIs of this host that died (a start killed
      // with SIGKILL can leave a pod that never runs, so no listener ever ends it).
      void this.reapNamespace(kube, namespace, opts.log);
      if (this.agent.check_out_of_pods && target) await checkNodeRoom(kube, target.nodeName, opts);
      const job = agentJob(input);
      opts.progress.update(`creating agent job ${job.metadata!.name} in namespace ${namespace}`);
      await call(
        { verb: 'create', resource: 'jobs', namespace },
        () => kube.batch.createNamespacedJob({ namespace, body: job }),
        kube.server,
        () => {
          throw new MirrordError(`namespace ${namespace} not found`, ExitCode.Target, 'Set agent.namespace to an existing namespace');
        },
      );
    }

    const logs: string[] = [];
    const recentLogs = () => logs;
    // Ctrl-C or a kill while the agent starts: the Job is deleted before the signal takes its usual
    // course, rather than waiting for its listener to give up on a client that never comes.
    const interrupted = (signal: NodeJS.Signals) => {
      releaseSignals();
      const done = () => process.kill(process.pid, signal);
      if (ephemeral || shared) return done();
      opts.progress.update('interrupted: removing the agent job');
      const timer = setTimeout(done, 3000);
      void this.deleteJob(kube, namespace, opts.session, opts.log).finally(() => {
        clearTimeout(timer);
        done();
      });
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.once(sig, interrupted);
    const releaseSignals = () => signals.forEach((sig) => process.off(sig, interrupted));
    try {
      await this.waitRunning(kube, place, opts, settings.image, deadline);
      opts.progress.update(`connecting to the agent (pod/${place.pod}) through port-forward`);
      const link = await connectAgent(
        kube.kc,
        namespace,
        place.pod!,
        port,
        deadline,
        async () => void (await this.agentStatus(kube, place, settings.image)),
        (m) => opts.log.debug(m),
      ).catch((err: unknown) => {
        throw this.startError(err, place, opts);
      });
      releaseSignals();
      opts.log.debug(`agent link open: pod/${place.pod} port ${port}`);
      // The shared agent's relay: the session's own id and token first, then its AP link.
      if (shared) link.write(`${JSON.stringify({ session: opts.session, token: opts.token })}\n`);
      return {
        link,
        description: `${shared ? 'shared ' : ''}agent pod/${place.pod}${ephemeral ? ` (ephemeral container ${place.container})` : ''} in namespace ${namespace}`,
        stop: async () => {
          link.end();
          link.destroy();
        },
        recentLogs,
        streamWindow: AP_KUBE_STREAM_WINDOW,
      };
    } catch (err) {
      releaseSignals();
      logs.push(...(await this.tailLogs(kube, place)));
      // A Job whose pod cannot start would retry pulling forever; an ephemeral container cannot be removed.
      if (!ephemeral && !shared) await this.deleteJob(kube, namespace, opts.session, opts.log);
      if (err instanceof MirrordError && logs.length && !err.message.includes('agent said')) {
        throw new MirrordError(`${err.message} (agent said: ${logs.slice(-3).join(' | ')})`, err.code, err.hint, { cause: err });
      }
      throw err;
    }
  }

  private startError(err: unknown, place: AgentPlace, opts: AgentStartOptions): MirrordError {
    if (err instanceof MirrordError) return err;
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 403) {
      return new MirrordError(
        `RBAC denied: cannot create pods/portforward in namespace ${place.namespace} (${(err as Error).message})`,
        ExitCode.Platform,
        'Ask a cluster admin to bind you to the mirrord Role in templates/rbac.yaml',
      );
    }
    return new MirrordError(
      `the agent (pod/${place.pod}) did not answer through port-forward within ${opts.startupTimeoutMs / 1000} s: ${(err as Error).message}`,
      ExitCode.Agent,
      'Raise agent.startup_timeout on slow clusters; run with MIRRORD_LOG=debug for details',
    );
  }

  private async addEphemeralContainer(kube: Kube, target: KubeTarget, ec: k8s.V1EphemeralContainer): Promise<void> {
    const { namespace, pod: name } = target;
    for (let attempt = 0; ; attempt++) {
      const pod = await call({ verb: 'get', resource: 'pods', namespace, name }, () => kube.core.readNamespacedPod({ name, namespace }), kube.server);
      pod.spec!.ephemeralContainers = [...(pod.spec!.ephemeralContainers ?? []), ec];
      try {
        await kube.core.replaceNamespacedPodEphemeralcontainers({ name, namespace, body: pod });
        return;
      } catch (err) {
        // Someone else changed the pod between our read and write: read it again.
        if (isApiStatus(err, 409) && attempt < 5) continue;
        if (isApiStatus(err, 404) || isApiStatus(err, 405)) {
          throw new MirrordError(
            `this cluster does not support ephemeral containers (${(err as Error).message})`,
            ExitCode.Agent,
            'Set agent.ephemeral to false (job mode)',
          );
        }
        throw apiError(err, { verb: 'update', resource: 'pods/ephemeralcontainers', namespace, name }, kube.server);
      }
    }
  }

  /** The agent's container status, or an error naming why it cannot start. */
  private async agentStatus(kube: Kube, place: AgentPlace, image: string): Promise<k8s.V1ContainerStatus | undefined> {
    let pod: k8s.V1Pod | undefined;
    if (place.ephemeral) {
      pod = await call(
        { verb: 'get', resource: 'pods', namespace: place.namespace, name: place.pod },
        () => kube.core.readNamespacedPod({ name: place.pod!, namespace: place.namespace }),
        kube.server,
      );
    } else {
      const list = await call(
        { verb: 'list', resource: 'pods', namespace: place.namespace },
        () => kube.core.listNamespacedPod({ namespace: place.namespace, labelSelector: place.selector }),
        kube.server,
      );
      // A shared agent's pod of a finished Job may linger a second: the live one counts.
      pod = list.items.find((p) => !p.metadata?.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed') ?? list.items[0];
      if (pod) place.pod = pod.metadata?.name;
    }
    if (!pod) return undefined;
    place.scheduled = !!pod.spec?.nodeName;
    const unschedulable = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
    place.note = unschedulable?.message && /Unschedulable/.test(unschedulable.reason ?? '') ? `not scheduled yet: ${unschedulable.message}` : undefined;
    const statuses = place.ephemeral ? pod.status?.ephemeralContainerStatuses : pod.status?.containerStatuses;
    const s = statuses?.find((c) => c.name === place.container);
    const waiting = s?.state?.waiting;
    // Once loaded, the kubelet finds the image at its next attempt (after its back-off, up to ~10 s).
    if (waiting?.reason && PULL_FAILURES.includes(waiting.reason) && !(await place.deliver?.(image))) {
      const { pullHint } = await import('../../images/deliver.js');
      throw new MirrordError(
        `the node cannot pull the agent image ${image} (${waiting.reason}${waiting.message ? `: ${waiting.message.slice(0, 200)}` : ''})`,
        ExitCode.Agent,
        pullHint(image, contextShapeOf(kube.kc)),
      );
    }
    if (waiting?.reason && START_FAILURES.includes(waiting.reason)) {
      throw new MirrordError(
        `the agent container cannot start (${waiting.reason}${waiting.message ? `: ${waiting.message.slice(0, 200)}` : ''})`,
        ExitCode.Agent,
        'Run with MIRRORD_LOG=debug; check the agent pod with kubectl describe',
      );
    }
    const term = s?.state?.terminated;
    if (term) {
      throw new MirrordError(
        `the agent exited before the session started (${term.reason ?? 'exit ' + term.exitCode}${term.message ? `: ${term.message.slice(0, 200)}` : ''})`,
        ExitCode.Agent,
        'Run with MIRRORD_LOG=debug for the agent log',
      );
    }
    if (pod.status?.phase === 'Failed')
      throw new MirrordError(
        `the agent pod failed (${pod.status.reason ?? ''} ${pod.status.message ?? ''})`.trim(),
        ExitCode.Agent,
        'Check it with kubectl describe pod ' + pod.metadata?.name,
      );
    return s;
  }

  /** A running, not terminating pod of the shared agent place.selector names. */
  private async livePod(kube: Kube, place: AgentPlace): Promise<string | undefined> {
    const list = await call(
      { verb: 'list', resource: 'pods', namespace: place.namespace },
      () => kube.core.listNamespacedPod({ namespace: place.namespace, labelSelector: place.selector }),
      kube.server,
    );
    return list.items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp)?.metadata?.name;
  }

  private async waitRunning(kube: Kube, place: AgentPlace, opts: AgentStartOptions, image: string, deadline: number): Promise<void> {
    let shown = '';
    for (;;) {
      const s = await this.agentStatus(kube, place, image);
      // The kubelet reports "running" only at its next relist (up to a second later); the
      // port-forward works as soon as the pod's sandbox has an address, and is retried until the
      // listener answers, so waiting for that is enough.
      if (s?.state?.running || (place.scheduled && s?.state?.waiting?.reason === 'ContainerCreating') || (place.ephemeral && place.scheduled)) return;
      const what =
        place.note ??
        (s?.state?.waiting?.reason
          ? `agent ${s.state.waiting.reason}`
          : place.pod
            ? `agent pod/${place.pod} starting`
            : 'waiting for the agent pod to be created');
      if (what !== shown) {
        opts.progress.update(what);
        opts.log.debug(what);
        shown = what;
      }
      if (Date.now() > deadline) {
        throw new MirrordError(
          `the agent did not start within ${opts.startupTimeoutMs / 1000} s (${what})`,
          ExitCode.Agent,
          'Raise agent.startup_timeout, or check the agent pod with kubectl describe',
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async tailLogs(kube: Kube, place: AgentPlace): Promise<string[]> {
    if (!place.pod) return [];
    try {
      const text = await kube.core.readNamespacedPodLog({ name: place.pod, namespace: place.namespace, container: place.container, tailLines: 5 });
      return String(text).split('\n').filter(Boolean).map(readableAgentLine);
    } catch {
      return [];
    }
  }

  private async deleteJob(kube: Kube, namespace: string, session: string, log: Logger): Promise<void> {
    try {
      await kube.batch.deleteNamespacedJob({ name: `mirrord-agent-${session}`, namespace, propagationPolicy: 'Background' });
    } catch (err) {
      if (!isApiStatus(err, 404)) log.debug(`could not delete the agent job: ${(err as Error).message}`);
    }
  }

  /** Agent Jobs expire by themselves (see the file comment); orphans are reaped per namespace in startAgent. */
  async reap(): Promise<void> {}

  private async reapNamespace(kube: Kube, namespace: string, log: Logger): Promise<void> {
    try {
      const jobs = await kube.batch.listNamespacedJob({ namespace, labelSelector: `${LABEL_APP}=mirrord-agent` });
      for (const j of jobs.items) {
        if (!ownerGone(j.metadata?.annotations?.[ANNOTATION_OWNER])) continue;
        log.debug(`reaper: deleting agent job ${j.metadata?.name} of a dead session`);
        await kube.batch.deleteNamespacedJob({ name: j.metadata!.name!, namespace, propagationPolicy: 'Background' });
      }
    } catch (err) {
      log.debug(`reaper: ${(err as Error).message}`);
    }
  }
}
