/**
 * src/session/fd-pass.ts without an agent: the setting and its override, when a session may try the
 * fast path, the directory's modes and socket path, and the removal of directories whose CLI died.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import { createFdPass, fdPassUnavailable, fdPassingSetting } from '../../src/session/fd-pass.js';

const log = createLogger('test', 'error');
const docker = { kind: 'docker', container: 'web' } as const;

describe('fd passing: the session side', () => {
  it('agent.fd_passing, with MIRRORD_AGENT_FD_PASSING over it', () => {
    assert.equal(fdPassingSetting({ fd_passing: 'auto' }, {}), 'auto');
    assert.equal(fdPassingSetting({ fd_passing: 'off' }, {}), 'off');
    assert.equal(fdPassingSetting({ fd_passing: 'auto' }, { MIRRORD_AGENT_FD_PASSING: 'off' }), 'off');
    assert.equal(fdPassingSetting({ fd_passing: 'off' }, { MIRRORD_AGENT_FD_PASSING: ' AUTO ' }), 'auto');
    // Anything else leaves the key in charge.
    assert.equal(fdPassingSetting({ fd_passing: 'off' }, { MIRRORD_AGENT_FD_PASSING: 'yes' }), 'off');
  });

  it('only Docker targets on Linux, without agent.shared, may try it', () => {
    assert.equal(fdPassUnavailable('off', docker, false), 'agent.fd_passing is off');
    assert.equal(fdPassUnavailable('auto', docker, true), 'agent.shared serves several sessions from one agent');
    assert.equal(fdPassUnavailable('auto', { kind: 'targetless' } as never, false), 'the target is not a Docker container');
    assert.equal(fdPassUnavailable('auto', docker, false, {}), process.platform === 'linux' ? undefined : 'the fast path needs Linux');
    if (process.platform === 'linux') {
      assert.equal(
        fdPassUnavailable('auto', docker, false, { DOCKER_HOST: 'tcp://10.0.0.2:2375' }),
        'the Docker engine is remote (DOCKER_HOST=tcp://10.0.0.2:2375)',
      );
      assert.equal(fdPassUnavailable('auto', docker, false, { DOCKER_HOST: 'unix:///run/docker.sock' }), undefined);
    }
  });

  it('a 0700 directory of the user with a 0777 child for the agent; the socket path fits sun_path', async () => {
    const fp = createFdPass(log)!;
    try {
      const parent = path.dirname(fp.hostDir);
      assert.equal(fs.statSync(parent).mode & 0o777, 0o700);
      assert.equal(fs.statSync(parent).uid, process.getuid!());
      assert.equal(fs.statSync(fp.hostDir).mode & 0o777, 0o777);
      assert.ok(Buffer.byteLength(fp.socketPath) <= 107, fp.socketPath);
      assert.ok(fp.token.length >= 32);
      assert.deepEqual(fp.layerEnv(), {}, 'nothing for the layer before the probe passed');
    } finally {
      await fp.remove();
    }
    assert.equal(fs.existsSync(path.dirname(fp.hostDir)), false);
  });

  it('a directory left by a CLI that died is removed by the next session; a live one stays', async () => {
    const dead = createFdPass(log)!;
    const live = createFdPass(log)!;
    const deadDir = path.dirname(dead.hostDir);
    // A pid that existed and is gone: a child that has exited and been waited for.
    const gone = spawnSync('true').pid!;
    fs.writeFileSync(path.join(deadDir, 'owner'), String(gone));
    const next = createFdPass(log)!;
    try {
      assert.equal(fs.existsSync(deadDir), false);
      assert.equal(fs.existsSync(path.dirname(live.hostDir)), true);
    } finally {
      for (const f of [dead, live, next]) await f.remove();
    }
  });
});
