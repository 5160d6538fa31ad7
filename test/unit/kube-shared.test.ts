import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LABEL_SHARED, LABEL_TARGET_UID, SHARED_OWNER, agentJob, sharedJobName, type AgentSpecInput } from '../../src/platforms/kubernetes/agent-spec.js';

/** agent.shared on Kubernetes: the Job every session of one target and agent kind finds and joins. */
describe('shared agent Job', () => {
  const target = { namespace: 'shop', pod: 'web-1', container: 'app', containerId: 'containerd://x', nodeName: 'node-a', podUid: 'u1', display: 'pod/web-1' };
  const input = (over: Partial<AgentSpecInput> = {}): AgentSpecInput => ({
    session: 'abc123',
    token: 't0k',
    port: 47000,
    namespace: 'shop',
    agent: { image: 'mirrord-agent:1', ttl: 5, privileged: false, log_level: 'warn' },
    target,
    fsWrite: false,
    sharedKey: 'k1',
    ...over,
  });
  const env = (job: ReturnType<typeof agentJob>) => Object.fromEntries(job.spec!.template.spec!.containers[0]!.env!.map((e) => [e.name, e.value]));

  it('one name per target container and kind, whatever the session: two sessions starting at once make one Job', () => {
    const a = agentJob(input());
    const b = agentJob(input({ session: 'zzz999', token: 'other' }));
    assert.equal(a.metadata!.name, b.metadata!.name);
    assert.equal(a.metadata!.name, sharedJobName(target, 'k1'));
    assert.notEqual(sharedJobName(target, 'k2'), a.metadata!.name, 'another kind of agent is another Job');
    assert.notEqual(sharedJobName({ ...target, podUid: 'u2' }, 'k1'), a.metadata!.name, 'another target is another Job');
    assert.match(a.metadata!.name!, /^[a-z0-9-]{1,63}$/);
  });

  it('labelled with its kind and target, owned by no session, its listener in shared mode with the ttl', () => {
    const job = agentJob(input());
    for (const l of [job.metadata!.labels!, job.spec!.template.metadata!.labels!]) {
      assert.equal(l[LABEL_SHARED], 'k1');
      assert.equal(l[LABEL_TARGET_UID], 'u1');
    }
    assert.equal(job.metadata!.annotations!['dev.mirrord/owner'], SHARED_OWNER, 'no reaper judges it by a CLI pid');
    assert.equal(env(job).MIRRORD_AGENT_SHARED, '1');
    assert.equal(env(job).MIRRORD_AGENT_TTL, '5');
    const own = agentJob(input({ sharedKey: undefined }));
    assert.equal(env(own).MIRRORD_AGENT_SHARED, undefined);
    assert.equal(own.metadata!.name, 'mirrord-agent-abc123');
    assert.equal(own.metadata!.labels![LABEL_SHARED], undefined);
  });
});
