import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import { bareContainerId, cgroupNamesContainer, findContainerPid } from '../../agent/src/kube/find-pid.js';
import { agentEphemeralContainer, agentJob, capabilities, type AgentSpecInput } from '../../src/platforms/kubernetes/agent-spec.js';
import { chooseContainer, selectorText } from '../../src/platforms/kubernetes/resolve.js';

const ID = 'a'.repeat(64);

describe('finding the target container by its ID in /proc/*/cgroup', () => {
  const proc = mkdtempSync(path.join(os.tmpdir(), 'fake-proc-'));
  after(() => rmSync(proc, { recursive: true, force: true }));
  const add = (pid: number, ppid: number, cgroup: string) => {
    mkdirSync(path.join(proc, String(pid)));
    writeFileSync(path.join(proc, String(pid), 'cgroup'), cgroup);
    writeFileSync(path.join(proc, String(pid), 'stat'), `${pid} (sh (odd) name) S ${ppid} 1 1 0 -1`);
  };

  it('matches cgroup v1 cgroupfs, v2 and systemd paths, and nothing else', () => {
    assert.ok(cgroupNamesContainer(`12:pids:/kubepods/besteffort/pod1234/${ID}\n`, ID));
    assert.ok(cgroupNamesContainer(`0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope\n`, ID));
    assert.ok(cgroupNamesContainer(`0::/system.slice/docker-${ID}.scope\n`, ID));
    assert.ok(!cgroupNamesContainer(`0::/kubepods/pod1/${'b'.repeat(64)}\n`, ID));
    assert.ok(!cgroupNamesContainer(`0::/kubepods/pod1/${ID}x\n`, ID));
    assert.equal(bareContainerId(`containerd://${ID}`), ID);
    assert.equal(bareContainerId(`cri-o://${ID}`), ID);
  });

  it("picks the container's first process: the member whose parent is outside it", async () => {
    add(1, 0, '0::/init.scope\n');
    add(500, 1, '0::/system.slice/containerd.service\n'); // the shim
    add(501, 500, `12:memory:/kubepods/pod9/${ID}\n3:pids:/kubepods/pod9/${ID}\n`);
    add(502, 501, `12:memory:/kubepods/pod9/${ID}\n`);
    add(503, 500, `12:memory:/kubepods/pod9/${'c'.repeat(64)}\n`);
    assert.equal(await findContainerPid(`containerd://${ID}`, proc), 501);
    assert.equal(await findContainerPid('d'.repeat(64), proc), undefined);
    await assert.rejects(findContainerPid('../../etc', proc), /not a container ID/);
  });
});

describe('agent objects', () => {
  const target = {
    namespace: 'shop',
    pod: 'web-1',
    container: 'app',
    containerId: `containerd://${ID}`,
    nodeName: 'node-a',
    podUid: 'u1',
    display: 'pod/web-1',
  };
  const input = (over: Partial<AgentSpecInput> = {}): AgentSpecInput => ({
    session: 'abc123',
    token: 't0k',
    port: 47000,
    namespace: 'shop',
    agent: { image: 'mirrord-agent:1', ttl: 1, privileged: false, log_level: 'warn' },
    target,
    fsWrite: false,
    ...over,
  });
  const env = (c: k8s.V1Container | k8s.V1EphemeralContainer) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

  it("job mode: on the target's node, hostPID, the fewest capabilities, expiring, labelled with the session", () => {
    const job = agentJob(input());
    const pod = job.spec!.template.spec!;
    assert.equal(pod.nodeName, 'node-a');
    assert.equal(pod.hostPID, true);
    assert.equal(pod.restartPolicy, 'Never');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(job.spec!.backoffLimit, 0);
    assert.ok((job.spec!.ttlSecondsAfterFinished ?? 99) <= 5);
    assert.equal(job.metadata!.labels!['dev.mirrord/session'], 'abc123');
    const c = pod.containers[0]!;
    assert.deepEqual(c.securityContext!.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW', 'SYS_PTRACE', 'DAC_READ_SEARCH', 'SYS_ADMIN'] });
    assert.equal(c.securityContext!.privileged, undefined);
    const e = env(c);
    assert.equal(e.MIRRORD_AGENT_MODE, 'listen');
    assert.equal(e.MIRRORD_AGENT_TARGET_CONTAINER_ID, `containerd://${ID}`);
    assert.equal(e.MIRRORD_AGENT_TOKEN, 't0k');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  });

  it('targetless: no node, no hostPID, no capabilities', () => {
    const job = agentJob(input({ target: undefined }));
    const pod = job.spec!.template.spec!;
    assert.equal(pod.nodeName, undefined);
    assert.equal(pod.hostPID, undefined);
    assert.deepEqual(pod.containers[0]!.securityContext!.capabilities!.add, []);
    assert.equal(env(pod.containers[0]!).MIRRORD_AGENT_TARGETLESS, '1');
  });

  it('ephemeral mode targets the container, needs no SYS_ADMIN; write mode and privileged are opt-in', () => {
    const ec = agentEphemeralContainer(input());
    assert.equal(ec.targetContainerName, 'app');
    assert.equal(env(ec).MIRRORD_AGENT_TARGET_PID, '1');
    assert.ok(!ec.securityContext!.capabilities!.add!.includes('SYS_ADMIN'));
    assert.ok(capabilities('job', true).includes('DAC_OVERRIDE'));
    assert.ok(!capabilities('job', false).includes('DAC_OVERRIDE'));
    const priv = agentJob(input({ agent: { image: 'x', ttl: 1, privileged: true, log_level: 'warn', labels: { team: 'a' }, image_pull_secrets: ['reg'] } }));
    assert.equal(priv.spec!.template.spec!.containers[0]!.securityContext!.privileged, true);
    assert.equal(priv.metadata!.labels!.team, 'a');
    assert.deepEqual(priv.spec!.template.spec!.imagePullSecrets, [{ name: 'reg' }]);
  });
});

describe('target resolution helpers', () => {
  const pod = (containers: string[], annotations?: Record<string, string>): k8s.V1Pod => ({
    metadata: { name: 'p', annotations },
    spec: { containers: containers.map((name) => ({ name })) },
  });

  it('chooses the named container, else the default-container annotation, else the first non-mesh one', () => {
    assert.equal(chooseContainer(pod(['istio-proxy', 'app', 'side'])), 'app');
    assert.equal(chooseContainer(pod(['app', 'side'], { 'kubectl.kubernetes.io/default-container': 'side' })), 'side');
    assert.equal(chooseContainer(pod(['app', 'side']), 'side'), 'side');
    assert.throws(
      () => chooseContainer(pod(['app']), 'nope'),
      (e: Error & { hint?: string }) => /has no container "nope"/.test(e.message) && e.hint === 'Its containers: app',
    );
    assert.throws(() => chooseContainer(pod(['linkerd-proxy'])), /only mesh containers/);
  });

  it("writes label selectors as the API's query text", () => {
    assert.equal(
      selectorText({
        matchLabels: { app: 'web', tier: 'fe' },
        matchExpressions: [
          { key: 'env', operator: 'In', values: ['a', 'b'] },
          { key: 'x', operator: 'Exists' },
          { key: 'y', operator: 'DoesNotExist' },
          { key: 'z', operator: 'NotIn', values: ['c'] },
        ],
      }),
      'app=web,tier=fe,env in (a,b),x,!y,z notin (c)',
    );
    assert.equal(selectorText(undefined), '');
  });
});
