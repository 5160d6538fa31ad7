import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { docker, RUN_ID, toolsImage } from '../helpers/docker-fixtures.js';

/**
 * This repository's own .devcontainer/ with the real `devcontainer` CLI: the feature it names by
 * local path is built into it as its README says (`scripts/build-feature.mjs --into`), then
 * `read-configuration` resolves it and `build` installs it. The build runs on the local tools
 * image instead of the Dockerfile (offline: its base image and packages come from registries);
 * everything else is the file as checked in.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEVCONTAINER = path.join(repo, 'node_modules/.bin/devcontainer');
const run = promisify(execFile);

describe("this repository's .devcontainer", { timeout: 600_000 }, () => {
  let ws = '';
  const image = `mirrord-test-repo-devc:${RUN_ID.toLowerCase().replace(/[^a-z0-9_.-]/g, '-')}`;
  const config = () => JSON.parse(readFileSync(path.join(repo, '.devcontainer/devcontainer.json'), 'utf8')) as Record<string, unknown>;

  before(() => {
    execFileSync(process.execPath, ['scripts/build-sea.mjs', '--if-stale'], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
    ws = mkdtempSync(path.join(os.tmpdir(), 'mirrord-repo-devc-'));
    // The sources only: a feature built into the checkout earlier is not what this test builds.
    const built = path.join(repo, '.devcontainer/mirrord');
    cpSync(path.join(repo, '.devcontainer'), path.join(ws, '.devcontainer'), { recursive: true, filter: (src) => !src.startsWith(built) });
    execFileSync(process.execPath, ['scripts/build-feature.mjs', '--into', path.join(ws, '.devcontainer/mirrord')], {
      cwd: repo,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  });

  after(async () => {
    await docker()
      .getImage(image)
      .remove({ force: true })
      .catch(() => undefined);
    if (ws) rmSync(ws, { recursive: true, force: true });
  });

  it('read-configuration resolves the feature from its local path, with its options', async () => {
    const r = await run(DEVCONTAINER, ['read-configuration', '--workspace-folder', ws, '--include-features-configuration'], {
      maxBuffer: 16 << 20,
      timeout: 120_000,
    });
    const out = JSON.parse(r.stdout) as {
      configuration: { features: Record<string, unknown> };
      featuresConfiguration: { featureSets: Array<{ features: Array<{ id: string; value: unknown; version?: string }> }> };
    };
    assert.deepEqual(out.configuration.features, { './mirrord': { start: false } });
    const features = out.featuresConfiguration.featureSets.flatMap((s) => s.features);
    assert.deepEqual(
      features.map((f) => [f.id, f.value]),
      [['mirrord', { start: false }]],
    );
  });

  it('build installs the feature (on a local image): mirrord runs, start is off, nothing is preloaded', async () => {
    const { build: _dockerfile, ...rest } = config();
    writeFileSync(path.join(ws, '.devcontainer/devcontainer.json'), JSON.stringify({ ...rest, image: await toolsImage() }, null, 2));
    const r = await run(DEVCONTAINER, ['build', '--workspace-folder', ws, '--buildkit', 'never', '--image-name', image], {
      maxBuffer: 64 << 20,
      timeout: 300_000,
    }).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`devcontainer build failed\n${err.stdout}\n${err.stderr}`));
    assert.equal((JSON.parse(r.stdout.trim().split('\n').pop()!) as { outcome: string }).outcome, 'success');
    const check = await run('docker', [
      'run',
      '--rm',
      '--entrypoint',
      'sh',
      image,
      '-c',
      'mirrord --version >/dev/null && grep -E "^MIRRORD_OPT_(START|PRELOAD)=" /usr/local/share/mirrord/options.env && ! test -e /etc/ld.so.preload && echo no-preload',
    ]);
    assert.deepEqual(check.stdout.trim().split('\n'), ["MIRRORD_OPT_START='false'", "MIRRORD_OPT_PRELOAD='all'", 'no-preload']);
  });
});
