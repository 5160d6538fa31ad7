import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliResult } from '../helpers/cli.js';
import { createNetwork, listContainers, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';
import { decodeSessionFile } from '../../src/devcontainer/session-file.js';

/**
 * `mirrord devcontainer start|status|stop|logs` on this machine, with --preload none (the host's
 * /etc/ld.so.preload is never touched here; devcontainer-feature.test.ts covers it inside a dev
 * container): the daemon's session, found by the layer from the session file alone.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LAYER = path.join(repo, 'layer/build/libmirrord_layer.so');

describe('mirrord devcontainer: the background session', { timeout: 300_000 }, () => {
  let state = '';
  let net: { name: string; remove(): Promise<void> };
  let target: TestContainer;
  let cache: TestContainer;
  const dc = (args: string[]): Promise<CliResult> => runCli(['devcontainer', ...args], { env: { MIRRORD_DEVCONTAINER_DIR: state }, timeoutMs: 180_000 });
  /** A program as the dev container would run it: the layer, and nothing naming the session. */
  const inContext = (script: string) =>
    spawnSync('sh', ['-c', script], {
      env: { PATH: process.env.PATH, LD_PRELOAD: LAYER, MIRRORD_SESSION_FILE: path.join(state, 'session') },
      encoding: 'utf8',
      timeout: 30_000,
    });
  const daemonPid = () => (JSON.parse(readFileSync(path.join(state, 'daemon.json'), 'utf8')) as { pid: number }).pid;

  before(async () => {
    state = mkdtempSync(path.join(os.tmpdir(), 'mirrord-dc-state-'));
    net = await createNetwork('e2e-dc');
    cache = await runContainer({
      name: 'e2e-dc-cache',
      network: net.name,
      aliases: ['dc-cache'],
      cmd: ['redis-server', '--protected-mode', 'no'],
      waitFor: { tcpPort: 6379 },
    });
    target = await runContainer({
      name: 'e2e-dc-target',
      network: net.name,
      env: { DC_VAR: 'from-the-target', PATH: '/target/bin' },
      cmd: ['/bin/sleep', 'infinity'],
    });
  });

  after(async () => {
    await dc(['stop']).catch(() => undefined);
    await Promise.all([target?.remove(), cache?.remove()].map((p) => p?.catch(() => undefined)));
    await net?.remove().catch(() => undefined);
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it('start returns once the session is live, with one line', async () => {
    const r = await dc(['start', '-t', `docker/${target.name}`, '--preload', 'none']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^mirrord: session on docker/${target.name} \\(\\w+\\) live \\(daemon \\d+\\); mirrord exec runs in its context\\n$`));
    assert.equal(r.stderr, '');
    const status = await dc(['status']);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /live \(daemon \d+, since .*, preload none\)/);
  });

  it("a process with only the layer reaches a neighbour by name and has the target's env, PATH its own", () => {
    const r = inContext('echo "DC_VAR=$DC_VAR PATH=$PATH"; redis-cli -h dc-cache ping');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [`DC_VAR=from-the-target PATH=${process.env.PATH}`, 'PONG']);
  });

  it('start again is a no-op that says so', async () => {
    const pid = daemonPid();
    const r = await dc(['start', '-t', `docker/${target.name}`, '--preload', 'none']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `mirrord: the session on docker/${target.name} (${target.id.slice(0, 12)}) is already live (daemon ${pid})\n`);
  });

  it('the session file names the CLI only for the single executable, and the daemon carries the mark', () => {
    const c = decodeSessionFile(readFileSync(path.join(state, 'session')));
    assert.equal(c?.cliExe, '');
    assert.equal(c?.env.DC_VAR, 'from-the-target');
    assert.equal(c?.env.PATH, undefined);
    assert.match(readFileSync(`/proc/${daemonPid()}/environ`, 'utf8'), /(^|\0)MIRRORD_DEVCONTAINER_DAEMON=1\0/);
  });

  it('a daemon killed with SIGKILL leaves a stale file: processes pass through, start starts anew', async () => {
    const pid = daemonPid();
    process.kill(pid, 'SIGKILL');
    while (spawnSync('kill', ['-0', String(pid)]).status === 0) await new Promise((r) => setTimeout(r, 50));
    const status = await dc(['status']);
    assert.equal(status.code, 1);
    const r = inContext('echo "DC_VAR=[$DC_VAR]"; redis-cli -h dc-cache ping');
    assert.ok(r.stdout.startsWith('DC_VAR=[]\n'), r.stdout);
    assert.notEqual(r.status, 0, 'dc-cache resolved without a session');
    const again = await dc(['start', '-t', `docker/${target.name}`, '--preload', 'none']);
    assert.equal(again.code, 0, again.stderr);
    assert.notEqual(daemonPid(), pid);
    assert.equal(inContext('redis-cli -h dc-cache ping').stdout.trim(), 'PONG');
  });

  it('stop ends the daemon and its agent; stop again is a no-op', async () => {
    const session = decodeSessionFile(readFileSync(path.join(state, 'session')))!.settings.MIRRORD_SESSION!;
    const r = await dc(['stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^mirrord: session on docker\/.* stopped\n$/);
    // The agent leaves when its link closes; Docker removes it (AutoRemove).
    let agents = await listContainers(`dev.mirrord.session=${session}`);
    for (let i = 0; i < 100 && agents.length; i++) {
      await new Promise((res) => setTimeout(res, 200));
      agents = await listContainers(`dev.mirrord.session=${session}`);
    }
    assert.deepEqual(
      agents.map((a) => a.Names),
      [],
    );
    assert.equal((await dc(['stop'])).stdout, 'mirrord: no session was running\n');
    assert.match((await dc(['logs'])).stdout, /session ends: SIGTERM/);
  });

  it('an unreachable target, no target, a bad secret: one warning line each, exit 0, no session', async () => {
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [['-t', 'docker/no-such-container-here'], /no Docker container named "no-such-container-here"/],
      [[], /no target given/],
      [
        ['-t', `docker/${target.name}`, '--kubeconfig-secret', 'DC_KC'],
        /the secret DC_KC is not a kubeconfig/,
        { DC_KC: Buffer.from('not: a kubeconfig').toString('base64') },
      ],
    ];
    for (const [args, message, env] of cases) {
      const r = await runCli(['devcontainer', 'start', '--preload', 'none', ...args], {
        env: { MIRRORD_DEVCONTAINER_DIR: state, ...env },
        cwd: state,
        timeoutMs: 120_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^mirrord: warning: /);
      assert.match(lines[0]!, message);
      assert.match(lines[0]!, /the dev container runs without mirrord/);
      assert.equal((await dc(['status'])).code, 1);
    }
  });

  it('a state directory that cannot be written: one warning line, exit 0', async () => {
    // A path under a regular file: ENOTDIR, whoever runs the test (root ignores EACCES).
    writeFileSync(path.join(state, 'a-file'), '');
    const r = await runCli(['devcontainer', 'start', '-t', `docker/${target.name}`, '--preload', 'none'], {
      env: { MIRRORD_DEVCONTAINER_DIR: path.join(state, 'a-file', 'dir') },
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^mirrord: warning: cannot write .*a-file\/dir \(ENOTDIR\): .*; the dev container runs without mirrord\n$/);
  });
});
