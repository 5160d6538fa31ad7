/**
 * feature.hostname (issue 17, item 3/4): in container mode the local container runs under the
 * target's host name (`hostname` and `uname -n` print it), on by default as in mirrord; false keeps
 * the container's own. `mirrord exec` hands the program MIRRORD_HOSTNAME, the name the layer reports.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-hostname-'));
let target: TestContainer;
let named: TestContainer;
let image = '';

function config(obj: unknown): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

describe('feature.hostname', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    target = await runContainer({ name: 'hostname-target', cmd: ['sleep', 'infinity'] });
    named = await runContainer({ name: 'hostname-named', cmd: ['sleep', 'infinity'] });
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
    await named?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("container mode: hostname and uname -n print the target's host name by default", async () => {
    const want = (await docker().getContainer(target.id).inspect()).Config.Hostname;
    const r = await runCli(['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', image, 'sh', '-c', 'hostname; uname -n'], {
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${want}\n${want}`);
  });

  it('container mode with hostname false: the container keeps a name of its own', async () => {
    const want = (await docker().getContainer(target.id).inspect()).Config.Hostname;
    const r = await runCli(
      ['container', '-t', `docker/${target.name}`, '-f', config({ feature: { hostname: false } }), '--', 'docker', 'run', '--rm', image, 'hostname'],
      { timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^[0-9a-f]{12}$/);
    assert.notEqual(r.stdout.trim(), want);
  });

  it("exec: the program gets MIRRORD_HOSTNAME, the target's host name; not with hostname false", async () => {
    const want = (await docker().getContainer(named.id).inspect()).Config.Hostname;
    const on = await runCli(['exec', '-t', `docker/${named.name}`, '--', 'sh', '-c', 'echo "h=$MIRRORD_HOSTNAME"'], { timeoutMs: 90_000 });
    assert.equal(on.code, 0, on.stderr);
    assert.equal(on.stdout.trim(), `h=${want}`);
    const off = await runCli(
      ['exec', '-t', `docker/${named.name}`, '-f', config({ feature: { hostname: false } }), '--', 'sh', '-c', 'echo "h=$MIRRORD_HOSTNAME"'],
      {
        timeoutMs: 90_000,
      },
    );
    assert.equal(off.stdout.trim(), 'h=', off.stderr);
  });
});
