/**
 * Agent keys of issue 17 on the test cluster: agent.check_out_of_pods (a session on the app's node
 * checks it and runs; a node holding as many pods as it allows is refused with one line) and
 * agent.json_log (the agent pod's log, as kubectl logs shows it, is JSON lines), with metrics and
 * communication_timeout set on the same session (the agent's environment carries them).
 * Run: `node --import tsx --test test/k8s/agent-keys.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import { runCli } from '../helpers/cli.js';
import { deployApp, type AppFixture } from '../helpers/k8s-app.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, waitFor } from '../helpers/k8s.js';
import { connectKube } from '../../src/platforms/kubernetes/client.js';
import { checkNodeRoom } from '../../src/platforms/kubernetes/platform.js';
import { createLogger } from '../../common/log.js';
import { quietProgress } from '../../src/progress.js';
import { MirrordError } from '../../common/errors.js';

describe('agent keys on Kubernetes', { timeout: 600_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let app: AppFixture;
  let tmp = '';
  const fakeNode = `mirrord-full-${randomBytes(3).toString('hex')}`;

  before(async () => {
    const images = await k8sTestImages();
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-agent-keys');
    app = await deployApp(ns.name, images[0]!, images[1]!);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-agent-keys-'));
  });

  after(async () => {
    // No kubelet will ever confirm its end: the pod on the fake node goes at once, then the node.
    await kube()
      .core.deleteNamespacedPod({ namespace: ns.name, name: 'fills-the-node', gracePeriodSeconds: 0 })
      .catch(() => undefined);
    await kube()
      .core.deleteNode({ name: fakeNode })
      .catch(() => undefined);
    await ns?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("check_out_of_pods on the app's node: checked, room found, the session runs; the agent logs JSON lines", async () => {
    const cfg = path.join(tmp, 'keys.json');
    writeFileSync(
      cfg,
      JSON.stringify({ agent: { check_out_of_pods: true, json_log: true, log_level: 'info', metrics: '127.0.0.1:9464', communication_timeout: 20 } }),
    );
    let agentPod: k8s.V1Pod | undefined;
    const watching = waitFor(
      'the agent pod',
      async () => {
        const list = await kube().core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' });
        agentPod = list.items.find((p) => p.status?.phase === 'Running');
        return agentPod;
      },
      120_000,
      200,
    );
    const flag = path.join(tmp, 'seen');
    const session = runCli(
      ['exec', '-n', ns.name, '-t', `pod/${app.appPod.metadata!.name}`, '-f', cfg, '--', 'sh', '-c', `while [ ! -e ${flag} ]; do sleep 0.2; done; echo done`],
      { timeoutMs: 240_000, env: { MIRRORD_LOG: 'info' } },
    );
    await watching;
    // The agent's log as kubectl logs shows it, once the session is served.
    const log = await waitFor(
      'the agent to log the client',
      async () => {
        const text = String(await kube().core.readNamespacedPodLog({ namespace: ns.name, name: agentPod!.metadata!.name! }));
        return /client .* connected/.test(text) ? text : undefined;
      },
      60_000,
      300,
    );
    const env = Object.fromEntries((agentPod!.spec!.containers[0]!.env ?? []).map((e) => [e.name, e.value]));
    writeFileSync(flag, '');
    const r = await session;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done');
    const node = app.appPod.spec!.nodeName!;
    assert.match(r.stderr, new RegExp(`agent\\.check_out_of_pods: node ${node}: \\d+ pods, \\d+ allocatable`));
    const lines = log.split('\n').filter(Boolean);
    assert.ok(lines.length >= 2, log);
    for (const l of lines) {
      const o = JSON.parse(l) as { level: string; fields: { message: string } };
      assert.match(o.level, /^(ERROR|WARN|INFO|DEBUG|TRACE)$/, l);
    }
    assert.equal(env.MIRRORD_AGENT_JSON_LOG, '1');
    assert.equal(env.MIRRORD_AGENT_METRICS, '127.0.0.1:9464');
    assert.equal(env.MIRRORD_AGENT_COMMUNICATION_TIMEOUT, '20');
  });

  it('a node already holding as many pods as it allows is refused with one line', async () => {
    // A Node object without a kubelet (the API server keeps the status given at creation), made
    // full by one pod bound to it; nothing ever runs there.
    await kube().core.createNode({
      body: {
        metadata: { name: fakeNode, labels: { 'dev.mirrord.test': 'agent-keys' } },
        spec: { taints: [{ key: 'dev.mirrord/fake', effect: 'NoSchedule' }] },
        status: { allocatable: { pods: '1', cpu: '1', memory: '1Gi' }, capacity: { pods: '1', cpu: '1', memory: '1Gi' } },
      },
    });
    await kube().core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'fills-the-node' },
        spec: { nodeName: fakeNode, containers: [{ name: 'c', image: 'never-pulled', imagePullPolicy: 'Never' }] },
      },
    });
    const kc = connectKube({ kubeconfig: process.env.KUBECONFIG });
    const log = createLogger('test', 'error');
    await assert.rejects(checkNodeRoom(kc, fakeNode, { progress: quietProgress, log }), (e: Error) => {
      assert.ok(e instanceof MirrordError, String(e));
      assert.equal(e.message, `node ${fakeNode} has no room for the agent pod: 1 pods on it, 1 allocatable (agent.check_out_of_pods)`);
      return true;
    });
    // The app's own node has room: the same check passes there.
    await checkNodeRoom(kc, app.appPod.spec!.nodeName!, { progress: quietProgress, log });
  });
});
