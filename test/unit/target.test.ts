import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MirrordError } from '../../common/errors.js';
import { formatTarget, parseTarget } from '../../src/target.js';

describe('target strings', () => {
  it('parses every documented form', () => {
    assert.deepEqual(parseTarget('docker/web'), { kind: 'docker', container: 'web' });
    assert.deepEqual(parseTarget('targetless'), { kind: 'targetless' });
    assert.deepEqual(parseTarget('pod/api-1/container/main', 'ns'), { kind: 'pod', name: 'api-1', container: 'main', namespace: 'ns' });
    for (const k of ['deployment', 'statefulset', 'rollout', 'job', 'cronjob', 'service']) {
      assert.equal(formatTarget(parseTarget(`${k}/x`)), `${k}/x`);
    }
  });
  it('rejects malformed targets with the accepted forms', () => {
    for (const bad of ['docker/', 'docker/a/b', 'docker/..', 'docker/%2e', 'docker/a b', 'docker/-x', 'pod', 'pod/x/cont/y', 'vm/x', '']) {
      assert.throws(
        () => parseTarget(bad),
        (e: MirrordError) => /invalid target/.test(e.message) && /docker\/NAME_OR_ID/.test(e.hint ?? ''),
        bad,
      );
    }
  });
});
