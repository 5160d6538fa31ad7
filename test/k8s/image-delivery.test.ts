/**
 * The agent image reaching the cluster (issue 17, item 6), with the real CLI and the test cluster:
 * - an agent image the nodes cannot pull is loaded by the CLI itself through the documented load
 *   hook (MIRRORD_IMAGE_LOAD=test/cluster/load-image), with its line on stderr, and the session runs;
 * - without a way to load, the pull error names the exact commands;
 * - `mirrord image push` to Docker's registry on this machine, then a session whose agent the
 *   node pulls from it (image_pull_policy Always).
 * Run: `node --import tsx --test test/k8s/image-delivery.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runCli } from '../helpers/cli.js';
import { docker } from '../helpers/docker-fixtures.js';
import { agentImage, createTestNamespace, ensureImagesLoaded, k8sTestImages } from '../helpers/k8s.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('the agent image reaches the cluster', { timeout: 1_200_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let tmp = '';
  let agent = '';
  let registry: Registry | undefined;
  const local: string[] = [];

  const config = (agentKeys: object) => {
    const f = path.join(tmp, `${randomBytes(3).toString('hex')}.json`);
    writeFileSync(f, JSON.stringify({ agent: { ...agentKeys, startup_timeout: 120 } }));
    return f;
  };
  /** A tag of the agent image that exists on this engine only: the node has never seen it. */
  const freshTag = async () => {
    const repo = `mirrord-agent-e2e-${randomBytes(4).toString('hex')}`;
    await docker().getImage(agent).tag({ repo, tag: 'v1' });
    local.push(`${repo}:v1`);
    return `${repo}:v1`;
  };

  before(async () => {
    await ensureImagesLoaded(await k8sTestImages());
    agent = await agentImage();
    ns = await createTestNamespace('mirrord-images');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-images-'));
  });

  after(async () => {
    await ns?.remove();
    await registry?.stop();
    for (const i of local)
      await docker()
        .getImage(i)
        .remove()
        .catch(() => undefined);
    // What the CLI loaded or the node pulled, out of the test cluster's containerd again (best effort: another cluster keeps them).
    const names = local.map((i) => (i.split('/')[0]!.includes(':') || i.split('/')[0]!.includes('.') ? i : `docker.io/library/${i}`));
    await promisify(execFile)('bash', ['-c', `. ${REPO}/test/cluster/lib/common.sh && ctr_k8s images rm "$@"`, 'rm', ...names]).catch(() => undefined);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('a pull failure makes the CLI load the image through MIRRORD_IMAGE_LOAD, and the session runs', async () => {
    const image = await freshTag();
    const r = await runCli(['exec', '-n', ns.name, '-t', 'targetless', '-f', config({ image }), '--', 'sh', '-c', 'echo agent-reached'], {
      env: { MIRRORD_IMAGE_LOAD: path.join(REPO, 'test/cluster/load-image') },
      timeoutMs: 300_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'agent-reached');
    assert.match(r.stderr, new RegExp(`mirrord: the cluster cannot pull ${image}: loading it \\(.*test/cluster/load-image ${image}\\)`));
  });

  it('without a way to load, the error names the commands to run', async () => {
    const image = await freshTag();
    const r = await runCli(['exec', '-n', ns.name, '-t', 'targetless', '-f', config({ image }), '--', 'true'], {
      env: { MIRRORD_IMAGE_LOAD: '' },
      timeoutMs: 300_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`cannot pull the agent image ${image}`));
    assert.match(r.stderr, /mirrord image push REGISTRY\/mirrord-agent`, then set agent\.image to REGISTRY\/mirrord-agent:v1/);
  });

  it('mirrord image push to a registry on this machine, then a session whose node pulls the agent from it', async () => {
    registry = await startRegistry();
    const pushed = await runCli(['image', 'push', `${registry.host}/mirrord-agent`], { timeoutMs: 300_000 });
    assert.equal(pushed.code, 0, pushed.stderr);
    const ref = pushed.stdout.trim();
    assert.equal(ref, `${registry.host}/mirrord-agent:${agent.split(':')[1]}`);
    local.push(ref);
    const r = await runCli(
      ['exec', '-n', ns.name, '-t', 'targetless', '-f', config({ image: ref, image_pull_policy: 'Always' }), '--', 'sh', '-c', 'echo pulled'],
      {
        env: { MIRRORD_IMAGE_LOAD: '' },
        timeoutMs: 300_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'pulled');
  });
});
