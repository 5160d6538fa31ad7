import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CLI, runCli } from '../helpers/cli.js';
import { waitSessionGone, waitUserRunning } from '../helpers/sessions.js';
import os from 'node:os';
import { silentLogger } from '../../common/log.js';
import { LABEL_AGENT, LABEL_OWNER } from '../../src/platforms/docker/labels.js';
import { DockerPlatform } from '../../src/platforms/docker/platform.js';
import { RUN_ID, TEST_LABEL, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * Nothing of a container-mode session stays on the engine, however the CLI ends: agent, guard,
 * sidecar and the user's container (run with --rm) are all gone after a normal exit, Ctrl-C
 * (SIGINT) and SIGKILL of the CLI. Leftovers are found by the session's owner label.
 */
let image = '';
let target: TestContainer;

function startLongRun(): { pid: number; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; kill(s: NodeJS.Signals): void } {
  const child = spawn(process.execPath, [CLI, 'container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', image, 'sleep', '100000'], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, MIRRORD_LOG: 'warn' },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { pid: child.pid!, exited, kill: (s) => child.kill(s) };
}

describe('mirrord container leaves nothing behind', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    target = await runContainer({ name: 'cleanup-target', cmd: ['sleep', '100000'] });
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
  });

  it('after a normal exit', async () => {
    let pid = 0;
    const r = await runCli(['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', image, 'true'], {
      timeoutMs: 120_000,
      onSpawn: (c) => (pid = c.pid!),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await waitSessionGone(pid), []);
  });

  it('after bad input (an image the engine lacks): one line, exit 127, nothing left', async () => {
    let pid = 0;
    const r = await runCli(['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', `no-such-image-${process.pid}:none`, 'true'], {
      timeoutMs: 120_000,
      onSpawn: (c) => (pid = c.pid!),
    });
    assert.equal(r.code, 127);
    assert.match(r.stderr, /^mirrord: image no-such-image-\d+:none is not on the Docker engine\. .+\n$/);
    assert.deepEqual(await waitSessionGone(pid), []);
  });

  it('after Ctrl-C (SIGINT to the CLI): the program gets it and the status is 130', async () => {
    const run = startLongRun();
    await waitUserRunning(run.pid);
    run.kill('SIGINT');
    assert.deepEqual(await run.exited, { code: 130, signal: null });
    assert.deepEqual(await waitSessionGone(run.pid), []);
  });

  it('after SIGKILL of the CLI: the user container too, with no process left to clean up', async () => {
    const run = startLongRun();
    await waitUserRunning(run.pid);
    run.kill('SIGKILL');
    assert.equal((await run.exited).signal, 'SIGKILL');
    assert.deepEqual(await waitSessionGone(run.pid), []);
    // The target itself is untouched.
    assert.equal((await target.exec(['true'])).code, 0);
  });

  it("the next session's reaper removes a user container a killed CLI left unstarted, and keeps one that ran (no --rm)", async () => {
    // A pid that has been and gone: the owner of both containers is dead.
    const dead = spawn('true');
    await new Promise((resolve) => dead.on('exit', resolve));
    const labels = { [LABEL_AGENT]: 'user', [LABEL_OWNER]: `${os.hostname()}:${dead.pid}`, [TEST_LABEL]: RUN_ID };
    const unstarted = await docker().createContainer({ Image: image, Cmd: ['true'], Labels: labels });
    const ran = await docker().createContainer({ Image: image, Cmd: ['true'], Labels: labels });
    await ran.start();
    await ran.wait();
    await new DockerPlatform(docker()).reap(silentLogger);
    await assert.rejects(unstarted.inspect(), /no such container/i);
    assert.equal((await ran.inspect()).State.Status, 'exited');
    await ran.remove({ force: true });
  });
});
