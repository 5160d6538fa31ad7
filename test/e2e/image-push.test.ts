/**
 * `mirrord image build | push` (issue 17, item 6) against a real registry on this machine: Docker's
 * registry built from the Go module proxy, on a loopback port. The pushed agent image is pulled back
 * by the engine under its registry name; a push without a registry is one line, exit 64.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { docker } from '../helpers/docker-fixtures.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

let registry: Registry;

describe('mirrord image push to a registry', { timeout: 1_200_000 }, () => {
  before(async () => {
    registry = await startRegistry();
  });

  after(async () => {
    await registry?.stop();
  });

  it('build prints the agent image; push puts it in the registry under its own tag; the engine pulls it back', async () => {
    const built = await runCli(['image', 'build'], { timeoutMs: 600_000 });
    assert.equal(built.code, 0, built.stderr);
    const image = built.stdout.trim();
    assert.match(image, /^mirrord-agent:[0-9a-f]{12}$/);
    const tag = image.split(':')[1]!;

    const pushed = await runCli(['image', 'push', `${registry.host}/team/mirrord-agent`], { timeoutMs: 300_000 });
    assert.equal(pushed.code, 0, pushed.stderr);
    const ref = `${registry.host}/team/mirrord-agent:${tag}`;
    assert.equal(pushed.stdout.trim(), ref);
    assert.deepEqual(await registry.tags('team/mirrord-agent'), [tag]);

    // The engine's copy under the registry name goes; a pull must then come from the registry.
    await docker().getImage(ref).remove();
    const stream = await docker().pull(ref);
    await new Promise((resolve, reject) => docker().modem.followProgress(stream, (err) => (err ? reject(err) : resolve(undefined))));
    const info = await docker().getImage(ref).inspect();
    assert.equal(info.Id, (await docker().getImage(image).inspect()).Id);
    await docker().getImage(ref).remove();
  });

  it('a name without a registry is one line, exit 64', async () => {
    const r = await runCli(['image', 'push', 'mirrord-agent'], { timeoutMs: 300_000 });
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, /names no registry/);
    assert.equal(r.stderr.trim().split('\n').length <= 2, true, r.stderr);
  });
});
