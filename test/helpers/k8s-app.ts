/**
 * The Kubernetes tier's application: in one namespace, `redis` (a Service only cluster DNS knows),
 * `app` (a Deployment of the smoke image behind a Service on port 80, with env from a ConfigMap and a
 * Secret and a ConfigMap mounted at /etc/app), and `client`, a pod to call the app from inside.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { CLI } from './cli.js';
import { findContainerPid } from '../../agent/src/kube/find-pid.js';
import { execInPod, kube, waitForReadyPods } from './k8s.js';

const run = promisify(execFile);

export const CONFIG_YAML = 'greeting: hello-from-the-configmap\nreplicas: 3\n';
export const FROM_CONFIGMAP = 'configmap-value-42';
export const FROM_SECRET = 'secret-value-7';

export interface AppFixture {
  namespace: string;
  appPod: k8s.V1Pod;
  redisPod: k8s.V1Pod;
  clientPod: string;
}

function deployment(name: string, image: string, container: Partial<k8s.V1Container>, extra: Partial<k8s.V1PodSpec> = {}): k8s.V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { terminationGracePeriodSeconds: 1, containers: [{ name, image, imagePullPolicy: 'Never', ...container }], ...extra },
      },
    },
  };
}

export async function deployApp(namespace: string, tools: string, smoke: string): Promise<AppFixture> {
  const { core, apps } = kube();
  await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'app-config' }, data: { FROM_CONFIGMAP, 'config.yaml': CONFIG_YAML } } });
  await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'app-secret' }, stringData: { token: FROM_SECRET } } });
  await apps.createNamespacedDeployment({
    namespace,
    body: deployment('redis', tools, { command: ['redis-server', '--protected-mode', 'no', '--save', ''], ports: [{ containerPort: 6379 }] }),
  });
  await core.createNamespacedService({ namespace, body: { metadata: { name: 'redis' }, spec: { selector: { app: 'redis' }, ports: [{ port: 6379 }] } } });
  await apps.createNamespacedDeployment({
    namespace,
    body: deployment(
      'app',
      smoke,
      {
        ports: [{ containerPort: 8080 }],
        env: [
          { name: 'FROM_CONFIGMAP', valueFrom: { configMapKeyRef: { name: 'app-config', key: 'FROM_CONFIGMAP' } } },
          { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 'app-secret', key: 'token' } } },
          { name: 'PLAIN_VALUE', value: 'plain' },
        ],
        volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
      },
      { volumes: [{ name: 'config', configMap: { name: 'app-config', items: [{ key: 'config.yaml', path: 'config.yaml' }] } }] },
    ),
  });
  await core.createNamespacedService({
    namespace,
    body: { metadata: { name: 'app' }, spec: { selector: { app: 'app' }, ports: [{ port: 80, targetPort: 8080 }] } },
  });
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: 'client', labels: { role: 'client' } },
      spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'client', image: tools, imagePullPolicy: 'Never', command: ['sleep', 'infinity'] }] },
    },
  });
  const [[appPod], [redisPod]] = await Promise.all([
    waitForReadyPods(namespace, 'app=app', 1),
    waitForReadyPods(namespace, 'app=redis', 1),
    waitForReadyPods(namespace, 'role=client', 1),
  ]);
  return { namespace, appPod: appPod!, redisPod: redisPod!, clientPod: 'client' };
}

export interface ExecSession {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Signals the CLI, waits for it, then ends whatever is left of its process group. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `mirrord exec -f CONFIG -n NAMESPACE -t TARGET -- PROGRAM...` in its own process group, so that a
 * program orphaned by a killed CLI is ended with it.
 */
export function execUnderMirrord(namespace: string, target: string, config: string, program: string[]): ExecSession {
  const child = spawn(process.execPath, [CLI, 'exec', '-f', config, '-n', namespace, '-t', target, '--', ...program], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'exit', not 'close': after a SIGKILL the orphaned program still holds the pipes.
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    child.kill(signal);
    await exited;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Nothing left in the group.
    }
  };
  return { child, stdout: () => stdout, stderr: () => stderr, stop };
}

/** `python3 -m http.server PORT` on 127.0.0.1 serving DIR, under execUnderMirrord. */
export function serveUnderMirrord(namespace: string, target: string, config: string, port: number, dir: string): ExecSession {
  return execUnderMirrord(namespace, target, config, ['python3', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir]);
}

/**
 * The nat table of a pod's first container's network namespace, both iptables backends, with packet
 * counters and comments removed so that two readings compare equal when the rules are the same.
 */
export async function podNat(namespace: string, pod: string): Promise<string> {
  const p = await kube().core.readNamespacedPod({ name: pod, namespace });
  const pid = await findContainerPid(p.status!.containerStatuses![0]!.containerID!);
  if (!pid) throw new Error(`pod ${pod}'s container has no process on this host`);
  const out: string[] = [];
  for (const save of ['iptables-nft-save', 'iptables-legacy-save']) {
    const r = await run('nsenter', [`--net=/proc/${pid}/ns/net`, '--', save, '-t', 'nat']).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    out.push(r.stdout.replace(/\[\d+:\d+\]/g, '').replace(/^#.*\n/gm, ''));
  }
  return out.join('--\n');
}

/** curl of the app's Service from the client pod: the body, trimmed. */
export async function curlApp(app: AppFixture, urlPath = '/', header?: string, maxTime = 5): Promise<string> {
  const args = ['curl', '-sS', '--max-time', String(maxTime), ...(header ? ['-H', header] : []), `http://app.${app.namespace}.svc.cluster.local${urlPath}`];
  return (await execInPod(app.namespace, app.clientPod, 'client', args)).stdout.trim();
}
