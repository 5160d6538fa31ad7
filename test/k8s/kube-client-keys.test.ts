/**
 * The Kubernetes client keys of mirrord's config (issue 17, items 2/3) against the test cluster:
 * accept_invalid_certificates lets a session reach an API server whose certificate the kubeconfig
 * cannot verify (here: a kubeconfig without the cluster's CA), and a kubeconfig list is merged as
 * KUBECONFIG, so kube_context may name a context that only its second file has.
 * Run: `node --import tsx --test test/k8s/kube-client-keys.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { runCli } from '../helpers/cli.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages } from '../helpers/k8s.js';

describe('kube client keys', { timeout: 600_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let tmp = '';
  let noCa = '';
  let other = '';

  before(async () => {
    await ensureImagesLoaded(await k8sTestImages());
    ns = await createTestNamespace('mirrord-kube-keys');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-kube-keys-'));
    const kc = new k8s.KubeConfig();
    kc.loadFromString(readFileSync(process.env.KUBECONFIG!, 'utf8'));
    const cluster = kc.getCurrentCluster()!;
    // The same cluster and credentials, without the CA: its certificate no longer verifies.
    const stripped = new k8s.KubeConfig();
    stripped.loadFromOptions({
      clusters: [{ name: 'no-ca', server: cluster.server }],
      users: kc.users,
      contexts: [{ name: 'no-ca', cluster: 'no-ca', user: kc.getCurrentUser()!.name }],
      currentContext: 'no-ca',
    });
    noCa = path.join(tmp, 'no-ca.kubeconfig');
    writeFileSync(noCa, stripped.exportConfig());
    // A first file whose current context points nowhere: only the merge makes the real one reachable.
    const decoy = new k8s.KubeConfig();
    decoy.loadFromOptions({
      clusters: [{ name: 'decoy', server: 'https://127.0.0.1:1' }],
      users: [{ name: 'decoy', token: 'x' }],
      contexts: [{ name: 'decoy', cluster: 'decoy', user: 'decoy' }],
      currentContext: 'decoy',
    });
    other = path.join(tmp, 'decoy.kubeconfig');
    writeFileSync(other, decoy.exportConfig());
  });

  after(async () => {
    await ns?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const session = (cfg: object) => {
    const f = path.join(tmp, `${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(cfg));
    return runCli(['exec', '-n', ns.name, '-t', 'targetless', '-f', f, '--', 'sh', '-c', 'echo reached'], { timeoutMs: 180_000, env: { KUBECONFIG: '' } });
  };

  it('without the CA the API server is refused; accept_invalid_certificates reaches it', async () => {
    const refused = await session({ kubeconfig: noCa });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /not reachable|certificate/i);
    const accepted = await session({ kubeconfig: noCa, accept_invalid_certificates: true });
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.equal(accepted.stdout.trim(), 'reached');
  });

  it('a kubeconfig list is merged: kube_context names a context of its second file', async () => {
    const r = await session({ kubeconfig: `${other}:${process.env.KUBECONFIG}`, kube_context: currentOf(process.env.KUBECONFIG!) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'reached');
  });
});

function currentOf(file: string): string {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  return kc.getCurrentContext();
}
