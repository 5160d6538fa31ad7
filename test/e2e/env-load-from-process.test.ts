/**
 * feature.env.load_from_process end to end: the real CLI starts the program with the local
 * environment, and the real layer applies the target's (as include/exclude/override/unset made it)
 * from the intproxy before main(). The program and a child it starts print what they see.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

const PROGRAM = `
import os, subprocess, sys
names = ['APP_MODE', 'APP_SECRET', 'X_OVERRIDE', 'LOCAL_ONLY']
print(' '.join('%s=%s' % (n, os.environ.get(n, '-')) for n in names))
sys.stdout.flush()
subprocess.run([sys.executable, '-c', 'import os; print("child APP_MODE=" + os.environ.get("APP_MODE", "-"))'])
`;

let target: TestContainer;
let dir = '';

describe('feature.env.load_from_process', { timeout: 300_000 }, () => {
  before(async () => {
    target = await runContainer({ name: 'e2e-envproc-target', cmd: ['sleep', '100000'], env: { APP_MODE: 'remote', APP_SECRET: 's3cret' } });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-envproc-'));
    writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
    const env = (load: boolean) => ({
      feature: { env: { load_from_process: load, exclude: 'APP_SECRET', override: { X_OVERRIDE: 'ov' }, unset: 'LOCAL_ONLY' } },
    });
    writeFileSync(path.join(dir, 'on.json'), JSON.stringify(env(true)));
    writeFileSync(path.join(dir, 'off.json'), JSON.stringify(env(false)));
  });
  after(async () => {
    await target?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const exec = (cfg: string) =>
    runCli(['exec', '-t', `docker/${target.name}`, '-f', path.join(dir, cfg), '--', 'python3', path.join(dir, 'prog.py')], {
      env: { LOCAL_ONLY: 'here', APP_MODE: 'local', MIRRORD_LAYER_LOG: 'debug' },
      timeoutMs: 120_000,
    });

  it('set: the layer applies the remote environment before main(); a child inherits it', async () => {
    const r = await exec('on.json');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['APP_MODE=remote APP_SECRET=- X_OVERRIDE=ov LOCAL_ONLY=-', 'child APP_MODE=remote']);
    // The layer applied it (the CLI started the program with the local environment).
    assert.match(r.stderr, /feature\.env\.load_from_process: [1-9]\d* variable\(s\) applied/);
  });

  it('unset: the CLI merges the environment itself, as before; the layer applies nothing', async () => {
    const r = await exec('off.json');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['APP_MODE=remote APP_SECRET=- X_OVERRIDE=ov LOCAL_ONLY=-', 'child APP_MODE=remote']);
    assert.doesNotMatch(r.stderr, /load_from_process/);
  });
});
