import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { agentJob, podProfiles, type AgentSpecInput, type KubeAgentSettings } from '../../src/platforms/kubernetes/agent-spec.js';
import { writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** mirrord's agent pod keys (issue 17, item 3), from a config file to the agent Job's pod spec. */

const target = { namespace: 'shop', pod: 'web-1', container: 'app', containerId: 'containerd://x', nodeName: 'node-a', podUid: 'u1', display: 'pod/web-1' };
const input = (agent: Partial<KubeAgentSettings>, targeted = true): AgentSpecInput => ({
  session: 's1',
  token: 't',
  port: 47000,
  namespace: 'shop',
  agent: { image: 'mirrord-agent:1', ttl: 1, privileged: false, log_level: 'warn', ...agent },
  target: targeted ? target : undefined,
  fsWrite: false,
});

async function agentFrom(yaml: string): Promise<KubeAgentSettings> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-agent-keys-'));
  const file = path.join(dir, 'mirrord.yaml');
  writeFileSync(file, yaml);
  const { config } = await loadConfig({ file, cwd: dir });
  return { ...config.agent, image: 'mirrord-agent:1' } as KubeAgentSettings;
}

describe('agent pod keys', () => {
  it('service_account, priority_class, security_context and disabled_capabilities reach the pod, as mirrord writes them', async () => {
    const agent = await agentFrom(
      [
        'agent:',
        '  service_account: mirrord-agent',
        '  priority_class: dev-low',
        '  security_context:',
        '    seccomp_profile: {type: Localhost, localhost_profile: profiles/agent.json}',
        '    app_armor_profile: {type: RuntimeDefault}',
        '  disabled_capabilities: [CAP_SYS_PTRACE, dac_read_search]',
        '  labels: {team: core}',
        '  annotations: {sidecar.istio.io/inject: "false"}',
        '',
      ].join('\n'),
    );
    const job = agentJob(input(agent));
    const pod = job.spec!.template.spec!;
    assert.equal(pod.serviceAccountName, 'mirrord-agent');
    assert.equal(pod.automountServiceAccountToken, false, 'the agent never calls the API');
    assert.equal(pod.priorityClassName, 'dev-low');
    assert.deepEqual(pod.securityContext, {
      seccompProfile: { type: 'Localhost', localhostProfile: 'profiles/agent.json' },
      appArmorProfile: { type: 'RuntimeDefault' },
    });
    assert.deepEqual(pod.containers[0]!.securityContext!.capabilities!.add, ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']);
    assert.equal(job.spec!.template.metadata!.labels!.team, 'core');
    assert.equal(job.spec!.template.metadata!.annotations!['sidecar.istio.io/inject'], 'false');
    assert.equal(pod.nodeSelector, undefined);
  });

  it("node_selector applies to targetless agents; a targeted agent stays on its target's node", async () => {
    const agent = await agentFrom('agent:\n  node_selector: {kubernetes.io/os: linux, pool: dev}\n');
    assert.deepEqual(agentJob(input(agent, false)).spec!.template.spec!.nodeSelector, { 'kubernetes.io/os': 'linux', pool: 'dev' });
    const targeted = agentJob(input(agent)).spec!.template.spec!;
    assert.equal(targeted.nodeSelector, undefined);
    assert.equal(targeted.nodeName, 'node-a');
  });

  it('no keys, no pod fields; camelCase profiles are read too', () => {
    const pod = agentJob(input({})).spec!.template.spec!;
    assert.deepEqual([pod.serviceAccountName, pod.priorityClassName, pod.securityContext], [undefined, undefined, undefined]);
    assert.deepEqual(podProfiles({ seccompProfile: { type: 'RuntimeDefault' } }), { seccompProfile: { type: 'RuntimeDefault' } });
    assert.equal(podProfiles({ seccomp_profile: {} }), undefined);
  });

  it('disable_mesh_sidecar_injection: on by default the pod keeps Istio, Linkerd and Kuma away; false leaves that out; agent.labels still win', async () => {
    const on = agentJob(input(await agentFrom('agent: {labels: {team: core}}\n'))).spec!.template.metadata!;
    assert.equal(on.labels!['sidecar.istio.io/inject'], 'false');
    assert.equal(on.annotations!['linkerd.io/inject'], 'disabled');
    assert.equal(on.annotations!['kuma.io/sidecar-injection'], 'disabled');
    assert.equal(on.labels!.team, 'core');
    const off = agentJob(input(await agentFrom('agent: {disable_mesh_sidecar_injection: false}\n'))).spec!.template.metadata!;
    assert.equal(off.labels!['sidecar.istio.io/inject'], undefined);
    assert.equal(off.annotations!['linkerd.io/inject'], undefined);
    const own = agentJob(input(await agentFrom('agent: {annotations: {linkerd.io/inject: enabled}}\n'))).spec!.template.metadata!;
    assert.equal(own.annotations!['linkerd.io/inject'], 'enabled', "the user's own annotation wins");
  });
});
