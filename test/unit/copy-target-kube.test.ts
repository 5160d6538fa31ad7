import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import { silentLogger } from '../../common/log.js';
import { quietProgress } from '../../src/progress.js';
import { copyKubePod } from '../../src/copy-target/kubernetes.js';
import type { Kube } from '../../src/platforms/kubernetes/client.js';

/**
 * The order of copy_target's steps on Kubernetes, against an in-memory API (the real cluster run is
 * test/k8s/copy-target.test.ts): the copy runs before the workload is scaled to 0, release scales
 * back before deleting the copy, a failed start leaves nothing, a pod without a workload is refused
 * before anything is made.
 */

function fakeKube(o: { owned?: boolean; copyStarts?: boolean } = {}) {
  const calls: string[] = [];
  const pods = new Map<string, k8s.V1Pod>();
  let replicas = 3;
  pods.set('app-5d-x', {
    metadata: {
      name: 'app-5d-x',
      namespace: 'shop',
      labels: { app: 'app', 'pod-template-hash': '5d' },
      ownerReferences: o.owned === false ? [] : [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'app-5d', uid: 'rs', controller: true }],
    },
    spec: { containers: [{ name: 'app', image: 'app:1' }] },
  });
  const kube = {
    core: {
      readNamespacedPod: async ({ name }: { name: string }) => {
        const p = pods.get(name);
        if (!p) throw Object.assign(new Error('not found'), { code: 404 });
        if (name.startsWith('mirrord-copy-')) {
          calls.push('poll copy');
          const running = o.copyStarts !== false;
          return {
            ...p,
            status: running
              ? { phase: 'Running', containerStatuses: [{ name: 'app', state: { running: {} } }] }
              : { phase: 'Pending', containerStatuses: [{ name: 'app', state: { waiting: { reason: 'ErrImagePull' } } }] },
          };
        }
        return p;
      },
      createNamespacedPod: async ({ body }: { body: k8s.V1Pod }) => {
        calls.push(`create ${body.metadata!.name}`);
        pods.set(body.metadata!.name!, body);
        return body;
      },
      deleteNamespacedPod: async ({ name }: { name: string }) => {
        calls.push(`delete ${name}`);
        pods.delete(name);
        return {};
      },
    },
    apps: {
      readNamespacedReplicaSet: async () => ({ metadata: { ownerReferences: [{ kind: 'Deployment', name: 'app', controller: true }] } }),
      readNamespacedDeploymentScale: async () => ({ spec: { replicas } }),
      replaceNamespacedDeploymentScale: async ({ body }: { body: k8s.V1Scale }) => {
        replicas = body.spec!.replicas!;
        calls.push(`scale ${replicas}`);
        return body;
      },
    },
  } as unknown as Kube;
  return { kube, calls, pods, replicas: () => replicas };
}

const target = { namespace: 'shop', pod: 'app-5d-x', container: 'app', containerId: 'c', nodeName: 'n', podUid: 'u', display: 'deployment/app' };
const opts = (started: (c: unknown) => void = () => undefined) => ({
  session: 's1',
  scaleDown: true,
  timeoutMs: 5000,
  progress: quietProgress,
  log: silentLogger,
  started,
});

describe('copy_target on Kubernetes: the order of its steps', () => {
  it('create, wait running, scale to 0; release scales back to the old count, then deletes the copy', async () => {
    const f = fakeKube();
    const told: unknown[] = [];
    const copy = await copyKubePod(
      f.kube,
      target,
      opts((c) => told.push(structuredClone(c))),
    );
    assert.deepEqual(f.calls, ['create mirrord-copy-app-5d-x-s1', 'poll copy', 'scale 0']);
    assert.deepEqual(copy.scaled, { kind: 'deployment', name: 'app', replicas: 3 });
    // The watchdog learns the copy as soon as it exists, and the count before it is changed.
    assert.deepEqual(told, [
      { namespace: 'shop', pod: 'mirrord-copy-app-5d-x-s1', container: 'app' },
      { namespace: 'shop', pod: 'mirrord-copy-app-5d-x-s1', container: 'app', scaled: { kind: 'deployment', name: 'app', replicas: 3 } },
    ]);
    await copy.release();
    assert.deepEqual(f.calls.slice(3), ['scale 3', 'delete mirrord-copy-app-5d-x-s1']);
    assert.equal(f.replicas(), 3);
  });

  it('a copy that cannot start is deleted and the workload never scaled', async () => {
    const f = fakeKube({ copyStarts: false });
    await assert.rejects(copyKubePod(f.kube, target, opts()), /did not start \(ErrImagePull\)/);
    assert.deepEqual(f.calls, ['create mirrord-copy-app-5d-x-s1', 'poll copy', 'delete mirrord-copy-app-5d-x-s1']);
    assert.equal(f.replicas(), 3);
  });

  it('scale_down on a pod no workload owns is refused before anything is made', async () => {
    const f = fakeKube({ owned: false });
    await assert.rejects(copyKubePod(f.kube, target, opts()), /belongs to no Deployment or StatefulSet/);
    assert.deepEqual(f.calls, []);
  });
});
