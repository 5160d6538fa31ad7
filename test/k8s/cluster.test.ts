/**
 * Smoke test of the Kubernetes tier's cluster (test/cluster/up, or whatever KUBECONFIG names): what
 * our Kubernetes support relies on, through the API server with @kubernetes/client-node as the CLI
 * uses it. Run: `node --import tsx --test test/k8s/cluster.test.ts` with KUBECONFIG set.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import {
  createTestNamespace,
  ensureImagesLoaded,
  errText,
  execInPod,
  isNotFound,
  k8sTestImages,
  kube,
  portForward,
  waitFor,
  waitForReadyPods,
} from '../helpers/k8s.js';

const APP = 'smoke';
const PORT = 8080;

describe('kubernetes test cluster', { timeout: 900_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let tools: string;
  let smoke: string;
  let appPods: k8s.V1Pod[] = [];
  let clientPod = '';

  before(async () => {
    const images = await k8sTestImages();
    [tools, smoke] = images as [string, string];
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-k8s-smoke');
  });

  after(async () => {
    await ns?.remove();
  });

  const sleeper = (name: string, extra: Partial<k8s.V1PodSpec> = {}, container: Partial<k8s.V1Container> = {}): k8s.V1Pod => ({
    metadata: { name, labels: { app: name } },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: tools, imagePullPolicy: 'IfNotPresent', command: ['sleep', 'infinity'], ...container }],
      ...extra,
    },
  });

  it('has a Ready node and cluster DNS', async () => {
    const { core } = kube();
    const nodes = (await core.listNode()).items;
    assert.ok(nodes.length >= 1, 'no nodes');
    assert.ok(
      nodes.some((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')),
      `no Ready node: ${JSON.stringify(nodes.map((n) => n.status?.conditions))}`,
    );
    const dns = await core.readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' });
    assert.ok(dns.spec?.clusterIP, 'kube-dns has no cluster IP');
  });

  it('runs a Deployment of 2 replicas of a locally built image, behind a Service', async () => {
    const { apps, core } = kube();
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: APP },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: APP } },
          template: {
            metadata: { labels: { app: APP } },
            spec: {
              terminationGracePeriodSeconds: 1,
              containers: [
                {
                  name: 'app',
                  image: smoke,
                  imagePullPolicy: 'IfNotPresent',
                  ports: [{ containerPort: PORT }],
                  readinessProbe: { httpGet: { path: '/ready', port: PORT }, periodSeconds: 1 },
                },
              ],
            },
          },
        },
      },
    });
    await core.createNamespacedService({
      namespace: ns.name,
      body: { metadata: { name: APP }, spec: { selector: { app: APP }, ports: [{ port: PORT, targetPort: PORT }] } },
    });
    appPods = await waitForReadyPods(ns.name, `app=${APP}`, 2);
    const ips = new Set(appPods.map((p) => p.status?.podIP));
    assert.equal(ips.size, 2, `two pods with their own addresses: ${[...ips].join(', ')}`);
    const dep = await apps.readNamespacedDeployment({ name: APP, namespace: ns.name });
    await waitFor('the Deployment to report 2 ready replicas', async () => {
      const d = await apps.readNamespacedDeployment({ name: APP, namespace: ns.name });
      return d.status?.readyReplicas === 2;
    });
    assert.equal(dep.spec?.template.spec?.containers[0]?.image, smoke);
  });

  it('resolves the Service by its full and short DNS names from another pod and reaches it', async () => {
    const { core } = kube();
    clientPod = 'client';
    await core.createNamespacedPod({ namespace: ns.name, body: sleeper(clientPod) });
    await waitForReadyPods(ns.name, `app=${clientPod}`, 1);
    const svc = await core.readNamespacedService({ name: APP, namespace: ns.name });
    const clusterIP = svc.spec?.clusterIP;
    assert.ok(clusterIP);
    const fqdn = `${APP}.${ns.name}.svc.cluster.local`;
    for (const name of [fqdn, APP, `${APP}.${ns.name}`]) {
      // CoreDNS learns of a new Service within a moment; retry briefly.
      const r = await waitFor(
        `${name} to resolve in pod ${clientPod}`,
        async () => {
          const res = await execInPod(ns.name, clientPod, 'main', ['getent', 'hosts', name]);
          return res.code === 0 ? res : undefined;
        },
        30_000,
      );
      assert.equal(r.stdout.trim().split(/\s+/)[0], clusterIP, `${name} -> ${r.stdout.trim()}`);
      const http = await execInPod(ns.name, clientPod, 'main', ['curl', '-sS', '--max-time', '10', `http://${name}:${PORT}/`]);
      assert.equal(http.code, 0, `curl ${name}: ${http.stderr}`);
      assert.match(http.stdout, new RegExp(`^hello from ${APP}-`));
    }
    const resolv = await execInPod(ns.name, clientPod, 'main', ['cat', '/etc/resolv.conf']);
    assert.match(resolv.stdout, new RegExp(`search ${ns.name}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local`));
  });

  it('lets a pod call the API server over TLS with its service-account token', async () => {
    const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
    const call = (p: string) =>
      execInPod(ns.name, clientPod, 'main', [
        'sh',
        '-c',
        `curl -sS --max-time 10 --cacert ${sa}/ca.crt -H "Authorization: Bearer $(cat ${sa}/token)" https://kubernetes.default.svc${p}`,
      ]);
    const version = await call('/version');
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /"gitVersion"/);
    // Authenticated (not anonymous) as the pod's service account, which may not list secrets.
    const denied = await call(`/api/v1/namespaces/${ns.name}/secrets`);
    assert.match(denied.stdout, new RegExp(`system:serviceaccount:${ns.name}:default`), denied.stdout);
  });

  it('serves pod logs through the API server', async () => {
    const { core } = kube();
    const pod = appPods[0]!.metadata!.name!;
    const text = await core.readNamespacedPodLog({ name: pod, namespace: ns.name, container: 'app' });
    assert.match(text, new RegExp(`smoke-app listening on ${PORT} in ${pod}`));
  });

  it('runs exec through the API server (stdout, stderr, exit code)', async () => {
    const pod = appPods[0]!.metadata!.name!;
    const r = await execInPod(ns.name, pod, 'app', ['sh', '-c', 'echo out-$HOSTNAME; echo err >&2; exit 3']);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, `out-${pod}\n`);
    assert.equal(r.stderr, 'err\n');
    const ok = await execInPod(ns.name, pod, 'app', ['true']);
    assert.equal(ok.code, 0);
  });

  it('port-forwards through the API server', async () => {
    const pod = appPods[1]!.metadata!.name!;
    const fwd = await portForward(ns.name, pod, PORT);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`http://127.0.0.1:${fwd.port}/`, { signal: AbortSignal.timeout(15_000) });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), `hello from ${pod}\n`);
      }
    } finally {
      await fwd.close();
    }
  });

  it('adds an ephemeral container to a running pod, sharing the target container’s processes', async () => {
    const { core } = kube();
    const name = appPods[0]!.metadata!.name!;
    const pod = await core.readNamespacedPod({ name, namespace: ns.name });
    pod.spec!.ephemeralContainers = [
      ...(pod.spec!.ephemeralContainers ?? []),
      { name: 'debugger', image: tools, imagePullPolicy: 'IfNotPresent', command: ['sleep', 'infinity'], targetContainerName: 'app' },
    ];
    await core.replaceNamespacedPodEphemeralcontainers({ name, namespace: ns.name, body: pod });
    await waitFor(
      'the ephemeral container to run',
      async () => {
        const p = await core.readNamespacedPod({ name, namespace: ns.name });
        const s = p.status?.ephemeralContainerStatuses?.find((c) => c.name === 'debugger');
        if (s?.state?.waiting?.reason && s.state.waiting.reason !== 'ContainerCreating')
          throw new Error(`waiting: ${s.state.waiting.reason} ${s.state.waiting.message ?? ''}`);
        return s?.state?.running !== undefined;
      },
      60_000,
    );
    const ps = await execInPod(ns.name, name, 'debugger', ['ps', '-eo', 'args']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(ps.stdout, /python3 -u \/srv\/server\.py/, `the target's process is visible:\n${ps.stdout}`);
    // The same network namespace: the app's port answers on the ephemeral container's localhost.
    const http = await execInPod(ns.name, name, 'debugger', ['curl', '-sS', '--max-time', '5', `http://127.0.0.1:${PORT}/`]);
    assert.equal(http.stdout, `hello from ${name}\n`);
  });

  it('runs a hostPID pod with NET_ADMIN that sees other pods’ processes', async () => {
    const { core } = kube();
    const name = 'hostpid';
    await core.createNamespacedPod({
      namespace: ns.name,
      body: sleeper(name, { hostPID: true }, { securityContext: { capabilities: { add: ['NET_ADMIN'] } } }),
    });
    await waitForReadyPods(ns.name, `app=${name}`, 1);
    const ps = await execInPod(ns.name, name, 'main', ['ps', '-eo', 'pid,args']);
    assert.equal(ps.code, 0, ps.stderr);
    const servers = ps.stdout.split('\n').filter((l) => l.includes('/srv/server.py'));
    assert.ok(servers.length >= 2, `both app pods' servers are visible:\n${ps.stdout}`);
    // NET_ADMIN: change the pod's own network namespace (an address on its loopback).
    const ip = await execInPod(ns.name, name, 'main', ['sh', '-c', 'ip addr add 10.123.45.67/32 dev lo && ip -4 addr show dev lo']);
    assert.equal(ip.code, 0, `ip addr add needs NET_ADMIN: ${ip.stderr}`);
    assert.match(ip.stdout, /10\.123\.45\.67/);
    const caps = await execInPod(ns.name, name, 'main', ['sh', '-c', "grep CapEff /proc/self/status | awk '{print $2}'"]);
    assert.ok((BigInt(`0x${caps.stdout.trim()}`) >> 12n) & 1n, `CAP_NET_ADMIN in ${caps.stdout}`);
  });

  it('deletes a finished Job after ttlSecondsAfterFinished', async () => {
    const { batch } = kube();
    const name = 'ttl-job';
    await batch.createNamespacedJob({
      namespace: ns.name,
      body: {
        metadata: { name },
        spec: {
          ttlSecondsAfterFinished: 3,
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: 'Never',
              terminationGracePeriodSeconds: 1,
              containers: [{ name: 'main', image: tools, imagePullPolicy: 'IfNotPresent', command: ['sh', '-c', 'echo done'] }],
            },
          },
        },
      },
    });
    let succeeded = false;
    await waitFor(
      'the Job to finish and be deleted by the TTL controller',
      async () => {
        try {
          const job = await batch.readNamespacedJob({ name, namespace: ns.name });
          if ((job.status?.succeeded ?? 0) >= 1) succeeded = true;
          if ((job.status?.failed ?? 0) >= 1) throw new Error('the Job failed');
          return false;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw new Error(errText(err), { cause: err });
        }
      },
      120_000,
    );
    assert.ok(succeeded, 'the Job was seen finished before it was deleted');
  });
});
