import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { docker, toolsImage } from '../helpers/docker-fixtures.js';
import { buildFeature, cachedImage } from '../helpers/devcontainer.js';

/**
 * `devcontainer features test` (the real @devcontainers/cli) of the built feature on local images,
 * offline: the default options (no target: nothing starts), and the scenarios of
 * templates/devcontainer-feature/test/mirrord/ (installed but not started with a second local
 * feature built after it, a non-root user with sudo, preload: shell with an unreachable target).
 * The scenarios name their images as @LOCAL_IMAGE@ and @LOCAL_IMAGE_WITH_USER@, filled in here.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEVCONTAINER = path.join(repo, 'node_modules/.bin/devcontainer');
const run = promisify(execFile);

/** The tools image with Codespaces' user: codespace, uid 1000, passwordless sudo. Built once, kept like the other test images. */
async function imageWithUser(base: string): Promise<string> {
  const dockerfile = `FROM ${base}\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo >/dev/null && rm -rf /var/lib/apt/lists/* \\\n && useradd -m -u 1000 -s /bin/bash codespace && echo 'codespace ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/codespace\n`;
  return cachedImage('mirrord-test-devc-user', dockerfile);
}

describe('devcontainer features test of the feature', { timeout: 600_000 }, () => {
  let project = '';
  let before_: Set<string>;

  before(async () => {
    buildFeature();
    before_ = new Set((await docker().listImages()).flatMap((i) => i.RepoTags ?? []));
    project = mkdtempSync(path.join(os.tmpdir(), 'mirrord-features-test-'));
    cpSync(path.join(repo, 'dist/devcontainer-feature'), project, { recursive: true });
    const tools = await toolsImage();
    const scenarios = path.join(project, 'test/mirrord/scenarios.json');
    writeFileSync(
      scenarios,
      readFileSync(scenarios, 'utf8')
        .replaceAll('@LOCAL_IMAGE@', tools)
        .replaceAll('@LOCAL_IMAGE_WITH_USER@', await imageWithUser(tools)),
    );
  });

  after(async () => {
    // The CLI removes its test containers but keeps the images it built (vsc-<time>-<hash>-features).
    const d = docker();
    for (const tag of (await d.listImages()).flatMap((i) => i.RepoTags ?? [])) {
      if (/^vsc-\d+-/.test(tag) && !before_?.has(tag))
        await d
          .getImage(tag)
          .remove({ force: true })
          .catch(() => undefined);
    }
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('passes the default test and every scenario', async () => {
    const r = await run(DEVCONTAINER, ['features', 'test', '-f', 'mirrord', '-i', await toolsImage(), '--skip-duplicated', '--project-folder', project], {
      maxBuffer: 64 << 20,
      timeout: 540_000,
    }).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`devcontainer features test failed\n${err.stdout}\n${err.stderr}`));
    const passed = [...r.stdout.matchAll(/Passed:\s+'([^']+)'/g)].map((m) => m[1]);
    assert.deepEqual(passed.sort(), ['installed_not_started', 'mirrord', 'non_root_user', 'preload_shell']);
    assert.doesNotMatch(r.stdout, /Failed:/);
  });
});
