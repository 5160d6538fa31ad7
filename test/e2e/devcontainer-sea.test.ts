import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * The CLI as one executable (scripts/build-sea.mjs), as the devcontainer feature installs it: copied
 * out of the checkout and run with a PATH that has no Node, it runs a session from its own assets.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('the single executable', { timeout: 300_000 }, () => {
  let work = '';
  let exe = '';
  let target: TestContainer;

  before(async () => {
    execFileSync(process.execPath, ['scripts/build-sea.mjs', '--if-stale'], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
    work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-sea-'));
    cpSync(path.join(repo, 'dist/sea/mirrord'), path.join(work, 'mirrord'), { recursive: true });
    exe = path.join(work, 'mirrord/mirrord');
    target = await runContainer({ name: 'e2e-sea', env: { SEA_VAR: 'from-the-target' }, cmd: ['sleep', 'infinity'] });
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // Only system directories: no node, npx or checkout on the way.
  const bare = () => ({ PATH: '/usr/bin:/bin', HOME: work, MIRRORD_LOG: 'warn', ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}) });

  it('reports the version of the package it was built from, with nothing else on stderr', () => {
    const r = spawnSync(exe, ['--version'], { cwd: work, env: bare(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const { version } = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
    assert.equal(r.stdout.trim(), version);
    // Node's SEA warnings (require of a non-built-in, the experimental banner) would show here.
    assert.equal(r.stderr, '');
  });

  it('runs mirrord exec with the layer beside it: the target env and its files', () => {
    const r = spawnSync(exe, ['exec', '-t', `docker/${target.name}`, '--', 'sh', '-c', 'echo "$SEA_VAR"; cat /etc/hostname'], {
      cwd: work,
      env: bare(),
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    const [envLine, hostname] = r.stdout.trim().split('\n');
    assert.equal(envLine, 'from-the-target');
    assert.equal(hostname, target.id.slice(0, 12));
  });
});
