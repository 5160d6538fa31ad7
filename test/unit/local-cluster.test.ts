import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadPlan, pullHint, pushReference } from '../../src/images/deliver.js';
import { contextShapeOf, detectLocalCluster, loadCommand } from '../../src/images/local-cluster.js';

/** Local clusters recognised from the kube contexts their tools write, and what loads an image into each. */

describe('local cluster detection from the kube context', () => {
  it('kind: context, cluster and user are kind-NAME', () => {
    const c = detectLocalCluster({ context: 'kind-dev', cluster: 'kind-dev', user: 'kind-dev', server: 'https://127.0.0.1:39123' });
    assert.deepEqual(c, { kind: 'kind', name: 'dev' });
    assert.deepEqual(loadCommand(c!, ['mirrord-agent:abc']), ['kind', 'load', 'docker-image', '--name', 'dev', 'mirrord-agent:abc']);
  });

  it('kind with a renamed context still has its kind-NAME cluster', () => {
    assert.deepEqual(detectLocalCluster({ context: 'work', cluster: 'kind-kind', user: 'kind-kind' }), { kind: 'kind', name: 'kind' });
  });

  it('k3d: k3d-NAME, loaded with k3d image import', () => {
    const c = detectLocalCluster({ context: 'k3d-mycluster', cluster: 'k3d-mycluster', user: 'admin@k3d-mycluster', server: 'https://0.0.0.0:6550' });
    assert.deepEqual(c, { kind: 'k3d', name: 'mycluster' });
    assert.deepEqual(loadCommand(c!, ['a:1']), ['k3d', 'image', 'import', '-c', 'mycluster', 'a:1']);
  });

  it('minikube: the default profile, and another profile recognised by its provider extension', () => {
    assert.deepEqual(detectLocalCluster({ context: 'minikube', cluster: 'minikube', user: 'minikube', server: 'https://192.168.49.2:8443' }), {
      kind: 'minikube',
      name: 'minikube',
    });
    const other = detectLocalCluster({
      context: 'dev2',
      cluster: 'dev2',
      extensions: [{ name: 'context_info', extension: { provider: 'minikube.sigs.k8s.io' } }],
    });
    assert.deepEqual(other, { kind: 'minikube', name: 'dev2' });
    assert.deepEqual(loadCommand(other!, ['a:1']), ['minikube', 'image', 'load', '-p', 'dev2', 'a:1']);
  });

  it("Docker Desktop shares the engine's images: nothing to load", () => {
    const c = detectLocalCluster({ context: 'docker-desktop', cluster: 'docker-desktop', server: 'https://kubernetes.docker.internal:6443' });
    assert.deepEqual(c, { kind: 'docker-desktop', name: 'docker-desktop' });
    assert.equal(loadCommand(c!, ['a:1']), undefined);
  });

  it('a remote cluster is none of them', () => {
    for (const ctx of [
      { context: 'gke_proj_europe-west1_prod', cluster: 'gke_proj_europe-west1_prod', server: 'https://34.1.2.3' },
      { context: 'arn:aws:eks:eu-west-1:123:cluster/shop', cluster: 'arn:aws:eks:eu-west-1:123:cluster/shop' },
      { context: 'kindergarten', cluster: 'kindergarten' },
    ]) {
      assert.equal(detectLocalCluster(ctx), undefined, ctx.context);
    }
  });

  it('reads the current context of a kubeconfig', () => {
    const kc = {
      getCurrentContext: () => 'kind-a',
      getContextObject: () => ({ cluster: 'kind-a', user: 'kind-a' }),
      getCluster: () => ({ server: 'https://127.0.0.1:1' }),
    };
    assert.deepEqual(contextShapeOf(kc), { context: 'kind-a', cluster: 'kind-a', user: 'kind-a', server: 'https://127.0.0.1:1' });
  });
});

describe('load plan, pull hint, push reference', () => {
  const kind = { context: 'kind-dev', cluster: 'kind-dev' };
  const remote = { context: 'prod', cluster: 'prod' };

  it('the load hook wins over detection and gets the images as arguments', () => {
    const p = loadPlan(kind, ['mirrord-agent:abc'], { MIRRORD_IMAGE_LOAD: 'test/cluster/load-image' });
    assert.deepEqual(p?.argv, ['sh', '-c', 'test/cluster/load-image "$@"', 'mirrord-image-load', 'mirrord-agent:abc']);
    assert.equal(loadPlan(remote, ['x'], {}), undefined);
  });

  it('the pull error names the exact command', () => {
    assert.match(pullHint('mirrord-agent:abc', kind, {}), /mirrord image load` \(runs kind load docker-image --name dev mirrord-agent:abc\)/);
    assert.match(
      pullHint('mirrord-agent:abc', remote, {}),
      /mirrord image push REGISTRY\/mirrord-agent`, then set agent\.image to REGISTRY\/mirrord-agent:abc/,
    );
  });

  it('push keeps the local tag unless one is given, and needs a registry', () => {
    assert.deepEqual(pushReference('mirrord-agent:abc', '127.0.0.1:5000/mirrord-agent'), { repo: '127.0.0.1:5000/mirrord-agent', tag: 'abc' });
    assert.deepEqual(pushReference('mirrord-agent:abc', 'reg.example.com/team/agent:v2'), { repo: 'reg.example.com/team/agent', tag: 'v2' });
    assert.throws(() => pushReference('mirrord-agent:abc', 'mirrord-agent'), /names no registry/);
  });
});
