import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type Docker from 'dockerode';
import type * as k8s from '@kubernetes/client-node';
import { LABEL_COPY_OF, copyContainerBody, extraNetworks } from '../../src/copy-target/docker.js';
import { COPY_LABEL_OF, COPY_LABEL_SESSION, copyPodManifest } from '../../src/copy-target/kubernetes.js';

/** What feature.copy_target copies of a target, and what it must not (src/copy-target). */

const ID = 'a1b2c3d4e5f6' + '0'.repeat(52);
function inspectInfo(over: Partial<Docker.ContainerInspectInfo> = {}): Docker.ContainerInspectInfo {
  return {
    Id: ID,
    Name: '/web',
    Image: 'sha256:feed',
    Config: {
      Hostname: 'a1b2c3d4e5f6',
      Domainname: '',
      User: 'app',
      Env: ['A=1'],
      Cmd: ['serve'],
      Entrypoint: ['/init'],
      WorkingDir: '/srv',
      Labels: { 'com.docker.compose.project': 'shop', team: 'core' },
      ExposedPorts: { '80/tcp': {} },
      Tty: false,
      OpenStdin: false,
    },
    HostConfig: { NetworkMode: 'shop_default', PortBindings: { '80/tcp': [{ HostPort: '8080' }] }, RestartPolicy: { Name: 'always' } },
    Mounts: [
      { Type: 'bind', Source: '/home/u/conf', Destination: '/conf', RW: false, Mode: 'ro', Propagation: '' },
      {
        Type: 'volume',
        Name: 'data',
        Source: '/var/lib/docker/volumes/data/_data',
        Destination: '/data',
        RW: true,
        Mode: '',
        Propagation: '',
        Driver: 'local',
      },
    ],
    NetworkSettings: {
      Networks: {
        shop_default: { Aliases: ['web', 'api', 'a1b2c3d4e5f6'], IPAddress: '172.20.0.5' },
        backend: { Aliases: ['web-backend'], IPAddress: '172.21.0.5' },
      },
    },
    State: { Running: true },
    ...over,
  } as unknown as Docker.ContainerInspectInfo;
}

describe('copy_target: the Docker copy', () => {
  it('keeps image, command, env, user, mounts, networks and aliases; drops ports, restarts, compose labels and the engine-made names', () => {
    const b = copyContainerBody(inspectInfo(), 'abc123');
    assert.equal(b.name, 'web-mirrord-copy-abc123');
    assert.equal(b.Image, 'sha256:feed');
    assert.deepEqual([b.Entrypoint, b.Cmd, b.Env, b.User, b.WorkingDir], [['/init'], ['serve'], ['A=1'], 'app', '/srv']);
    assert.equal(b.Hostname, undefined, "the engine's default host name (the short ID) is the original's own");
    assert.deepEqual(b.HostConfig!.Mounts, [
      { Type: 'bind', Source: '/home/u/conf', Target: '/conf', ReadOnly: true },
      { Type: 'volume', Source: 'data', Target: '/data', ReadOnly: false },
    ]);
    assert.equal(b.HostConfig!.PortBindings, undefined);
    assert.deepEqual(b.HostConfig!.RestartPolicy, { Name: 'no' });
    assert.equal(b.HostConfig!.NetworkMode, 'shop_default');
    assert.deepEqual(b.NetworkingConfig, { EndpointsConfig: { shop_default: { Aliases: ['api'] } } });
    assert.deepEqual(extraNetworks(inspectInfo()), [{ network: 'backend', aliases: ['web-backend'] }]);
    assert.equal(b.Labels!['com.docker.compose.project'], undefined);
    assert.equal(b.Labels!.team, 'core');
    assert.equal(b.Labels![LABEL_COPY_OF], 'web');
    assert.equal(b.Labels!['dev.mirrord.agent'], 'copy', 'the reaper removes a dead owner’s copy');
  });

  it('a host name the user set is copied; a container in another namespace joins it again', () => {
    const named = copyContainerBody(inspectInfo({ Config: { ...inspectInfo().Config, Hostname: 'web-1' } }), 's');
    assert.equal(named.Hostname, 'web-1');
    const joined = inspectInfo({ HostConfig: { NetworkMode: 'container:' + 'f'.repeat(64) } as Docker.HostConfig });
    const b = copyContainerBody(joined, 's');
    assert.equal(b.HostConfig!.NetworkMode, 'container:' + 'f'.repeat(64));
    assert.equal(b.NetworkingConfig, undefined);
    assert.deepEqual(extraNetworks(joined), []);
  });
});

function pod(): k8s.V1Pod {
  return {
    metadata: {
      name: 'checkout-7c9f8d6b5-x2x4q',
      namespace: 'shop',
      labels: { app: 'checkout', 'pod-template-hash': '7c9f8d6b5' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', team: 'core' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'checkout-7c9f8d6b5', uid: 'u', controller: true }],
      uid: 'pod-uid',
      resourceVersion: '42',
    },
    spec: {
      nodeName: 'node-1',
      hostname: 'checkout-0',
      containers: [
        {
          name: 'app',
          image: 'shop/checkout:1',
          livenessProbe: { httpGet: { port: 80 } },
          readinessProbe: { httpGet: { port: 80 } },
          env: [{ name: 'A', value: '1' }],
        },
      ],
      ephemeralContainers: [{ name: 'mirrord-agent-x', image: 'agent' }],
      volumes: [{ name: 'conf', configMap: { name: 'checkout' } }],
    },
  };
}

describe('copy_target: the Kubernetes copy', () => {
  it('keeps the spec without probes, node, ephemeral containers or owner; its labels select nothing without scale_down', () => {
    const m = copyPodManifest(pod(), 'abc123', false);
    assert.equal(m.metadata!.name, 'mirrord-copy-checkout-7c9f8d6b5-x2x4q-abc123');
    assert.deepEqual(m.metadata!.labels, { [COPY_LABEL_SESSION]: 'abc123', [COPY_LABEL_OF]: 'checkout-7c9f8d6b5-x2x4q' });
    assert.deepEqual(m.metadata!.annotations, { team: 'core' });
    assert.equal(m.metadata!.ownerReferences, undefined);
    assert.equal(m.metadata!.resourceVersion, undefined);
    const c = m.spec!.containers[0]!;
    assert.deepEqual([c.livenessProbe, c.readinessProbe, c.image, c.env], [undefined, undefined, 'shop/checkout:1', [{ name: 'A', value: '1' }]]);
    assert.deepEqual([m.spec!.nodeName, m.spec!.ephemeralContainers, m.spec!.hostname], [undefined, undefined, undefined]);
    assert.deepEqual(m.spec!.volumes, pod().spec!.volumes);
    assert.ok(pod().spec!.containers[0]!.livenessProbe, 'the original object is not changed');
  });

  it("with scale_down the workload's labels stay (its Services select the copy) but not the ReplicaSet's hash", () => {
    const m = copyPodManifest(pod(), 'abc123', true);
    assert.deepEqual(m.metadata!.labels, { app: 'checkout', [COPY_LABEL_SESSION]: 'abc123', [COPY_LABEL_OF]: 'checkout-7c9f8d6b5-x2x4q' });
  });

  it('a long pod name still gives a valid pod name', () => {
    const p = pod();
    p.metadata!.name = 'a'.repeat(80);
    const name = copyPodManifest(p, 'abc123abc123', false).metadata!.name!;
    assert.ok(name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name), name);
  });
});
