/**
 * The Kubernetes tier's application: in one namespace, `redis` (a Service only cluster DNS knows),
 * `app` (a Deployment of the smoke image behind a Service on port 80, with env from a ConfigMap and a
 * Secret and a ConfigMap mounted at /etc/app), and `client`, a pod to call the app from inside.
 */
import type * as k8s from '@kubernetes/client-node';
import { kube, waitForReadyPods } from './k8s.js';

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
