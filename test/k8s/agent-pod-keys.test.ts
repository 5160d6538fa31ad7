/**
 * mirrord's agent pod keys (issue 17, item 3) on the test cluster: a targetless session whose
 * config sets service_account, priority_class, security_context, node_selector, labels and
 * annotations runs, and its agent pod carries each of them while it does.
 * Run: `node --import tsx --test test/k8s/agent-pod-keys.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { runCli } from '../helpers/cli.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, waitFor } from '../helpers/k8s.js';

describe('agent pod keys', { timeout: 600_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let tmp = '';
  const priority = `mirrord-e2e-${randomBytes(3).toString('hex')}`;
  const scheduling = () => kube().kc.makeApiClient(k8s.SchedulingV1Api);

  before(async () => {
    await ensureImagesLoaded(await k8sTestImages());
    ns = await createTestNamespace('mirrord-agent-keys');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-agent-keys-'));
    await kube().core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'agent-runner' } } });
    await scheduling().createPriorityClass({ body: { metadata: { name: priority }, value: 1000 } });
  });

  after(async () => {
    await ns?.remove();
    await scheduling()
      .deletePriorityClass({ name: priority })
      .catch(() => undefined);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the agent pod has each key while the session runs', async () => {
    const cfg = path.join(tmp, 'mirrord.yaml');
    writeFileSync(
      cfg,
      [
        'agent:',
        '  service_account: agent-runner',
        `  priority_class: ${priority}`,
        '  security_context: {seccomp_profile: {type: RuntimeDefault}}',
        '  node_selector: {kubernetes.io/os: linux}',
        '  labels: {team: core}',
        '  annotations: {example.com/owner: corpus}',
        '',
      ].join('\n'),
    );
    let pod: k8s.V1Pod | undefined;
    const watching = waitFor(
      'the agent pod',
      async () => {
        const list = await kube().core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' });
        pod = list.items[0];
        return pod?.status?.phase === 'Running' ? pod : undefined;
      },
      120_000,
      200,
    );
    // The program lives until the test has read the pod: it waits for a file only the test writes.
    const flag = path.join(tmp, 'seen');
    const session = runCli(['exec', '-n', ns.name, '-t', 'targetless', '-f', cfg, '--', 'sh', '-c', `while [ ! -e ${flag} ]; do sleep 0.2; done; echo done`], {
      timeoutMs: 240_000,
    });
    await watching;
    writeFileSync(flag, '');
    const r = await session;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done');
    const spec = pod!.spec!;
    assert.equal(spec.serviceAccountName, 'agent-runner');
    assert.equal(spec.priorityClassName, priority);
    assert.equal(spec.priority, 1000, 'the admission controller resolved the class');
    assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault');
    assert.deepEqual({ ...spec.nodeSelector }, { 'kubernetes.io/os': 'linux' });
    assert.equal(pod!.metadata?.labels?.team, 'core');
    assert.equal(pod!.metadata?.annotations?.['example.com/owner'], 'corpus');
  });
});
