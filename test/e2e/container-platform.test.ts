/**
 * container.platform and docker run --platform (issue 17, item 3) with the real CLI: the local
 * container's image is asked for that platform, so the engine's own platform runs and another is
 * refused in one line naming the image and both platforms.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';
import { waitSessionGone } from '../helpers/sessions.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-platform-'));
let target: TestContainer;
let image = '';
const native = process.arch === 'arm64' ? 'linux/arm64' : 'linux/amd64';
const foreign = process.arch === 'arm64' ? 'linux/amd64' : 'linux/arm64';

function config(platform: string): string {
  const f = path.join(dir, `${platform.replace('/', '-')}.json`);
  writeFileSync(f, JSON.stringify({ container: { platform } }));
  return f;
}

describe('container.platform', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    target = await runContainer({ name: 'platform-target', cmd: ['sleep', 'infinity'] });
  });
  after(async () => {
    await target?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the engine's own platform runs", async () => {
    const r = await runCli(['container', '-t', `docker/${target.name}`, '-f', config(native), '--', 'docker', 'run', '--rm', image, 'uname', '-m'], {
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), process.arch === 'arm64' ? 'aarch64' : 'x86_64');
  });

  it('another platform is one line naming both, exit 64, nothing left; --platform wins over the config', async () => {
    let pid = 0;
    const r = await runCli(['container', '-t', `docker/${target.name}`, '-f', config(foreign), '--', 'docker', 'run', '--rm', image, 'true'], {
      timeoutMs: 120_000,
      onSpawn: (c) => (pid = c.pid!),
    });
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, new RegExp(`image ${image} is for linux/\\w+, not ${foreign}`));
    assert.deepEqual(await waitSessionGone(pid), []);
    const flag = await runCli(
      ['container', '-t', `docker/${target.name}`, '-f', config(foreign), '--', 'docker', 'run', '--rm', '--platform', native, image, 'true'],
      { timeoutMs: 120_000 },
    );
    assert.equal(flag.code, 0, flag.stderr);
  });
});
