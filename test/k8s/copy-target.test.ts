/**
 * feature.copy_target on Kubernetes (issue 17, item 4): the real CLI against deployment/app of the
 * test cluster. With scale_down the Deployment has 0 replicas during the session, its Service sends
 * everything to the copy (stolen here by a local server), and it has its old count again after a
 * normal exit and after SIGKILL of the CLI (the watchdog); the copy pod is deleted each time.
 * Run: `node --import tsx --test test/k8s/copy-target.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COPY_LABEL_SESSION } from '../../src/copy-target/kubernetes.js';
import { CLI } from '../helpers/cli.js';
import { deployApp, type AppFixture } from '../helpers/k8s-app.js';
import { createTestNamespace, ensureImagesLoaded, execInPod, k8sTestImages, kube, waitFor, waitForReadyPods } from '../helpers/k8s.js';

describe('feature.copy_target on a Deployment', { timeout: 1_200_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let app: AppFixture;
  let tmp = '';

  before(async () => {
    const images = await k8sTestImages();
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-copy');
    app = await deployApp(ns.name, images[0]!, images[1]!);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-copy-'));
    writeFileSync(path.join(tmp, 'index.html'), 'from-local\n');
  });

  after(async () => {
    await ns?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const replicas = async () => (await kube().apps.readNamespacedDeployment({ name: 'app', namespace: ns.name })).spec?.replicas;
  const copies = async () => (await kube().core.listNamespacedPod({ namespace: ns.name, labelSelector: COPY_LABEL_SESSION })).items;
  const curlApp = async () =>
    (await execInPod(ns.name, app.clientPod, 'client', ['curl', '-sS', '--max-time', '5', `http://app.${ns.name}.svc.cluster.local/`])).stdout.trim();

  /** mirrord exec on deployment/app stealing port 8080 into python's http.server, in its own process group. */
  /** Each case starts from a ready app pod: the one before may have just scaled it back. */
  async function session(copy: unknown) {
    await waitForReadyPods(ns.name, 'app=app', 1);
    const cfg = path.join(tmp, `cfg-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(cfg, JSON.stringify({ feature: { copy_target: copy, network: { incoming: { mode: 'steal', port_mapping: [[18080, 8080]] } } } }));
    const child = spawn(
      process.execPath,
      [CLI, 'exec', '-f', cfg, '-n', ns.name, '-t', 'deployment/app', '--', 'python3', '-m', 'http.server', '18080', '--bind', '127.0.0.1', '--directory', tmp],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, MIRRORD_LOG: 'warn' } },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, stderr: () => stderr, exited };
  }

  it('scale_down: 0 replicas and the Service on the copy during the session; the old count and no copy after', async () => {
    assert.equal(await replicas(), 1);
    const s = await session({ scale_down: true });
    await waitFor('the Deployment scaled to 0', async () => (await replicas()) === 0 || s.child.exitCode !== null, 180_000);
    assert.equal(s.child.exitCode, null, s.stderr());
    const [copy] = await copies();
    assert.ok(copy, 'a copy pod runs');
    assert.equal(copy.metadata?.labels?.app, 'app', "the copy keeps the workload's labels: its Service selects it");
    assert.equal(copy.metadata?.labels?.['pod-template-hash'], undefined);
    assert.equal(copy.spec?.containers[0]?.readinessProbe, undefined, 'no probes on the copy');
    assert.equal(copy.metadata?.ownerReferences, undefined);
    // The original pod goes with the scale-down; the Service then reaches the copy, whose port is stolen.
    await waitFor('the original pod gone', async () => {
      const pods = (await kube().core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=app' })).items;
      return pods.every((p) => p.metadata?.name === copy.metadata?.name);
    });
    await waitFor('the Service answering from the local program', async () => (await curlApp()) === 'from-local', 60_000);
    // The ReplicaSet did not adopt (and delete) the copy.
    assert.equal((await copies()).length, 1);

    // SIGTERM: python's http.server exits 0 on SIGINT (KeyboardInterrupt), but dies of SIGTERM.
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 143, s.stderr());
    assert.equal(await replicas(), 1, 'scaled back before the CLI exits');
    await waitFor('the copy deleted', async () => (await copies()).length === 0, 60_000);
    await waitFor('the app answering again', async () => /^hello from app-/.test(await curlApp()), 120_000);
  });

  it('scale_down after SIGKILL of the CLI: the watchdog restores the count and deletes the copy', async () => {
    const s = await session({ enabled: true, scale_down: true });
    await waitFor('the Deployment scaled to 0', async () => (await replicas()) === 0 || s.child.exitCode !== null, 180_000);
    assert.equal(s.child.exitCode, null, s.stderr());
    const killedAt = Date.now();
    process.kill(-s.child.pid!, 'SIGKILL');
    await waitFor('the Deployment back to 1 replica', async () => (await replicas()) === 1, 30_000, 200);
    const restored = (Date.now() - killedAt) / 1000;
    await waitFor('the copy deleted', async () => (await copies()).length === 0, 60_000);
    console.log(`# replicas restored ${restored.toFixed(1)} s after SIGKILL`);
    await waitFor('the app answering again', async () => /^hello from app-/.test(await curlApp()), 120_000);
  });

  it('without scale_down the copy is selected by no Service and the original keeps serving', async () => {
    const s = await session(true);
    await waitFor('a copy pod', async () => (await copies()).length === 1 || s.child.exitCode !== null, 180_000);
    const [copy] = await copies();
    assert.ok(copy, s.stderr());
    assert.equal(copy.metadata?.labels?.app, undefined);
    assert.equal(await replicas(), 1);
    // The steal is on the copy (its own address answers from the local program); the Service still reaches the original.
    const ip = (await waitFor(
      'the copy has an address',
      async () => (await kube().core.readNamespacedPod({ name: copy.metadata!.name!, namespace: ns.name })).status?.podIP,
    ))!;
    const curlCopy = async () => (await execInPod(ns.name, app.clientPod, 'client', ['curl', '-sS', '--max-time', '5', `http://${ip}:8080/`])).stdout.trim();
    await waitFor('the copy stolen', async () => (await curlCopy()) === 'from-local', 60_000);
    assert.match(await curlApp(), /^hello from app-/);
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 143, s.stderr());
    await waitFor('the copy deleted', async () => (await copies()).length === 0, 60_000);
  });
});
