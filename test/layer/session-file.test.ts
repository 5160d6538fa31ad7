/**
 * The layer tier, devcontainer sessions: with no MIRRORD_* variable the layer finds its intproxy and
 * the target's environment in the session file (src/devcontainer/session-file.ts), but only while a
 * daemon holds its lock; it stays inert for the daemon, the CLI and skipped programs.
 */
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { encodeSessionFile, takeLock, writeLockedSessionFile, type HeldSessionFile } from '../../src/devcontainer/session-file.js';
import { FakeIntproxy } from './fake-intproxy.js';
import { LAYER_SO, buildLayer, cTest, describeRun, layerEnv, lines, run, startServers, type Servers } from './harness.js';

const HELPER = path.join(path.dirname(LAYER_SO), 'mirrord-session-lock');
let servers: Servers;
let fake: FakeIntproxy;
let dir = '';
let held: HeldSessionFile | undefined;

before(async () => {
  buildLayer();
  servers = await startServers();
  fake = await FakeIntproxy.start({ dns: { 'only-remote.test': ['10.77.0.5'] }, connect: { '10.77.0.5:80': { viaPort: servers.tcpPort } } });
  dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-session-file-'));
});
after(async () => {
  await fake.stop();
  await servers.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  assert.deepEqual(fake.violations, []);
  held?.release();
  held = undefined;
});

const file = () => path.join(dir, 'session');
const SESSION = 'abc123';

function live(extra: { env?: Record<string, string>; settings?: Record<string, string>; cliExe?: string } = {}): void {
  held = writeLockedSessionFile(
    file(),
    {
      settings: { MIRRORD_LAYER_ADDR: fake.addr, MIRRORD_SESSION: SESSION, ...extra.settings },
      cliExe: extra.cliExe ?? '/nonexistent/mirrord',
      env: extra.env ?? { TARGET_VAR: 'from the target', MULTI: 'line one\nline two' },
    },
    HELPER,
  );
}

/** Under the layer with no MIRRORD_LAYER_ADDR: only the session file can name the intproxy. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return layerEnv(undefined, { MIRRORD_SESSION_FILE: file(), ...extra });
}

const resolve = () => run(cTest('t_resolve'), ['gai=only-remote.test'], env());

describe('a live session file', () => {
  it('names the intproxy: a name only the target knows resolves', async () => {
    live();
    const before = fake.hellos().length;
    const r = await resolve();
    assert.equal(r.code, 0, describeRun(r));
    assert.ok(r.stdout.includes('gai only-remote.test rc=0'), describeRun(r));
    assert.ok(r.stdout.includes('addr=10.77.0.5'), describeRun(r));
    assert.equal(fake.hellos().length, before + 1);
  });

  it("applies the target's environment in the constructor, newlines kept", async () => {
    live();
    const r = await run('/bin/sh', ['-c', 'printf "%s|%s\\n" "$TARGET_VAR" "$MULTI"'], env());
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stdout, 'from the target|line one\nline two\n');
  });

  it('a child keeps what its parent changed after the environment was applied', async () => {
    live();
    const r = await run(
      '/bin/sh',
      [
        '-c',
        'TARGET_VAR=mine sh -c \'echo "$TARGET_VAR"\'; env -i LD_PRELOAD="$LD_PRELOAD" MIRRORD_SESSION_FILE="$MIRRORD_SESSION_FILE" /bin/sh -c \'echo "$TARGET_VAR"\'',
      ],
      env(),
    );
    assert.equal(r.code, 0, describeRun(r));
    // env -i drops the mark too: a fresh environment gets the target's again (keeping only what
    // /etc/ld.so.preload and the default session path give in a dev container).
    assert.deepEqual(lines(r.stdout), ['mine', 'from the target']);
  });

  it("is ignored when another user owns it (neither root nor the process's own uid)", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to give the file to another user');
    live();
    const before = fake.hellos().length;
    chownSync(file(), 65534, 65534);
    try {
      const r = await resolve();
      assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
      assert.equal(fake.hellos().length, before);
    } finally {
      chownSync(file(), 0, 0);
    }
    // Root's own file again: read as before.
    const r = await resolve();
    assert.ok(r.stdout.includes('addr=10.77.0.5'), describeRun(r));
  });

  it("is read when its owner is the user root gave its directory to (a dev container's remote user), not when others can write there", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to give the directory to another user');
    // As the feature's install.sh makes /run/mirrord: in a root-owned parent, given to the remote user, 0755.
    const given = path.join(dir, 'given');
    mkdirSync(given, { mode: 0o755 });
    chownSync(given, 65534, 65534);
    const inGiven = path.join(given, 'session');
    held = writeLockedSessionFile(
      inGiven,
      { settings: { MIRRORD_LAYER_ADDR: fake.addr, MIRRORD_SESSION: SESSION }, cliExe: '/nonexistent/mirrord', env: {} },
      HELPER,
    );
    chownSync(inGiven, 65534, 65534);
    const resolveIn = () => run(cTest('t_resolve'), ['gai=only-remote.test'], layerEnv(undefined, { MIRRORD_SESSION_FILE: inGiven }));
    let r = await resolveIn();
    assert.ok(r.stdout.includes('addr=10.77.0.5'), describeRun(r));
    // A directory anyone may write into proves nothing about who wrote the file.
    chmodSync(given, 0o777);
    const before = fake.hellos().length;
    r = await resolveIn();
    assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
    assert.equal(fake.hellos().length, before);
  });

  it('is ignored by the daemon and its children (the mark in their environment)', async () => {
    live();
    const r = await run('/bin/sh', ['-c', 'echo "[$TARGET_VAR]"'], env({ MIRRORD_DEVCONTAINER_DAEMON: '1' }));
    assert.deepEqual(lines(r.stdout), ['[]']);
  });

  it('is ignored by the mirrord CLI itself (mirrord.exe)', async () => {
    live({ cliExe: cTest('t_resolve') });
    const before = fake.hellos().length;
    const r = await resolve();
    assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
    assert.equal(fake.hellos().length, before);
  });

  it('skip_processes by file name and by a part of the path', async () => {
    // The build directory's name: build/ or, in the sanitizer pass, build-asan/.
    const part = `/${path.basename(path.dirname(path.dirname(cTest('t_resolve'))))}/tests/`;
    for (const skip of ['t_resolve', part, `/nowhere/;${part}`]) {
      live({ settings: { MIRRORD_SKIP_PROCESSES: `other;${skip}` } });
      const r = await run('/bin/sh', ['-c', `${cTest('t_resolve')} gai=only-remote.test; echo "[$TARGET_VAR]"`], env());
      assert.ok(r.stdout.includes('gai only-remote.test rc=-'), `${skip}: ${describeRun(r)}`);
      // The shell is not skipped: it got the environment.
      assert.ok(r.stdout.includes('[from the target]'), describeRun(r));
      held?.release();
      held = undefined;
    }
  });
});

describe('a stale or foreign session file: everything passes through', () => {
  it('a file nobody holds the lock of (its daemon was killed)', async () => {
    writeFileSync(file(), encodeSessionFile({ settings: { MIRRORD_LAYER_ADDR: fake.addr, MIRRORD_SESSION: SESSION }, cliExe: '', env: { TARGET_VAR: 'x' } }));
    const before = fake.hellos().length;
    const r = await run('/bin/sh', ['-c', `${cTest('t_resolve')} gai=only-remote.test; echo "[$TARGET_VAR]"`], env());
    assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
    assert.ok(r.stdout.includes('[]'), describeRun(r));
    assert.equal(fake.hellos().length, before);
    assert.equal(r.stderr, '');
  });

  it('a locked file in a format the layer does not read', async () => {
    writeFileSync(file(), 'MIRRORD_LAYER_ADDR=' + fake.addr + '\n');
    const fd = openSync(file(), 'r');
    try {
      assert.ok(takeLock(fd, HELPER));
      const r = await resolve();
      assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
    } finally {
      closeSync(fd);
    }
  });

  it('no file at all', async () => {
    rmSync(file(), { force: true });
    const r = await resolve();
    assert.ok(r.stdout.includes('gai only-remote.test rc=-'), describeRun(r));
  });
});
