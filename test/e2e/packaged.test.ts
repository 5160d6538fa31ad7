import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * The package as a user gets it: `npm pack`, installed into an empty prefix, its `mirrord` run from
 * there. Proves that package.json#files ships everything a session needs (the CLI, the layer, the
 * agent's and the sidecar's bundles and image recipes, the C helpers).
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('the packed package', { timeout: 600_000 }, () => {
  let work = '';
  let bin = '';
  let target: TestContainer;

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-pack-'));
    execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote no tarball');
    const prefix = path.join(work, 'prefix');
    // --prefer-offline: the dependencies come from npm's cache when npm ci already fetched them.
    execFileSync('npm', ['install', '--silent', '--no-audit', '--no-fund', '--prefer-offline', '--prefix', prefix, path.join(work, tarball)], {
      stdio: ['ignore', 'ignore', 'inherit'],
      timeout: 300_000,
    });
    bin = path.join(prefix, 'node_modules/.bin/mirrord');
    target = await runContainer({ name: 'e2e-packed', env: { PACKED_VAR: 'from-the-target' }, cmd: ['sleep', 'infinity'] });
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs mirrord exec from the installed package, with no checkout beside it', () => {
    // cwd outside the checkout, and no MIRRORD_LAYER_PATH: everything must come from the install.
    const env = { ...process.env, MIRRORD_LAYER_PATH: '', MIRRORD_LOG: 'warn' };
    const r = spawnSync(bin, ['exec', '-t', `docker/${target.name}`, '--', 'sh', '-c', 'echo "$PACKED_VAR"; cat /etc/hostname'], {
      cwd: work,
      env,
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    const [envLine, hostname] = r.stdout.trim().split('\n');
    assert.equal(envLine, 'from-the-target');
    // /etc/hostname is the target's file, read through the agent.
    assert.equal(hostname, target.id.slice(0, 12));
  });

  it('reports its version from the installed package.json', () => {
    const r = spawnSync(bin, ['--version'], { cwd: work, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+/);
  });
});
