/**
 * feature.copy_target on Docker targets (issue 17, item 4): the real CLI makes a copy of the target
 * container (same image, command, env, bind mount, network and alias), the session's files, env
 * and stolen traffic are the copy's, the original keeps serving its own clients untouched, and the
 * copy is gone after a normal exit and after SIGKILL of the CLI (the watchdog).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LABEL_COPY_OF } from '../../src/copy-target/docker.js';
import { killGroups, startMirrord, until } from '../helpers/incoming.js';
import { sessionContainers, waitSessionGone } from '../helpers/sessions.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

const PORT = 8080;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-copy-target-'));
const shared = path.join(dir, 'shared');
const LOCAL_SERVER = path.join(dir, 'local-server.js');
writeFileSync(LOCAL_SERVER, `require('http').createServer((q, s) => s.end('from-local')).listen(${PORT}, () => console.log('listening'));\n`);
const TARGET_APP = `require('http').createServer((q, s) => s.end('from-target ' + require('os').hostname())).listen(${PORT})`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;

function config(copy: unknown): string {
  const file = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}.json`);
  // /etc is local by default: its host name file is read from the target only by this rule.
  writeFileSync(file, JSON.stringify({ feature: { copy_target: copy, network: { incoming: 'steal' }, fs: { read_only: '^/etc/hostname$' } } }));
  return file;
}

async function curl(host: string): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', '5', `http://${host}:${PORT}/`])).stdout;
}

async function copyOf(pid: number) {
  const c = (await sessionContainers(pid)).find((x) => x.Labels[LABEL_COPY_OF]);
  return c && (await docker().getContainer(c.Id).inspect());
}

describe('feature.copy_target on a Docker target', { timeout: 600_000 }, () => {
  let startedAt = '';

  before(async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(shared);
    writeFileSync(path.join(shared, 'data.txt'), 'from-the-bind-mount\n');
    network = await createNetwork('mirrord-copy');
    target = await runContainer({
      name: 'copy-target',
      network: network.name,
      aliases: ['webalias'],
      env: { APP_MODE: 'copied-env' },
      binds: [`${shared}:/data:ro`],
      cmd: ['node', '-e', TARGET_APP],
      waitFor: { tcpPort: PORT },
    });
    client = await runContainer({ name: 'copy-client', network: network.name, cmd: ['sleep', '100000'] });
    // Written after the start: only the original has it, so a session that reads it is not on the copy.
    assert.equal((await target.exec(['sh', '-c', 'echo late > /root/written-later'])).code, 0);
    startedAt = (await docker().getContainer(target.id).inspect()).State.StartedAt;
  });

  after(async () => {
    killGroups();
    await client?.remove().catch(() => undefined);
    await target?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the session runs against a copy (env, bind mount, network alias); the original keeps its traffic; the copy goes at the end', async () => {
    const probe = [
      'printf "host=%s mode=%s data=%s later=%s\\n" "$(cat /etc/hostname)" "$APP_MODE" "$(cat /data/data.txt)" "$(cat /root/written-later 2>/dev/null || echo none)"',
      `exec node ${LOCAL_SERVER}`,
    ].join('; ');
    const r = startMirrord(target.name, ['-f', config({ enabled: true })], ['sh', '-c', probe]);
    const pid = r.child.pid!;
    await until('the local server under mirrord', async () => r.out().includes('listening'), 90_000);
    const copy = await copyOf(pid);
    assert.ok(copy, `no copy container while the session runs: ${r.out()}`);
    const original = await docker().getContainer(target.id).inspect();
    // Same image, command, env and mount; on the same network under the same alias.
    assert.equal(copy.Image, original.Image);
    assert.deepEqual(copy.Config.Cmd, original.Config.Cmd);
    assert.ok(copy.Config.Env.includes('APP_MODE=copied-env'));
    assert.deepEqual(
      copy.Mounts.map((m) => [m.Source, m.Destination, m.RW]),
      [[shared, '/data', false]],
    );
    assert.ok(copy.NetworkSettings.Networks[network.name]?.Aliases?.includes('webalias'), JSON.stringify(copy.NetworkSettings.Networks));
    // The program's remote env and files are the copy's: its host name, not the original's, and no late file.
    const line = r
      .out()
      .split('\n')
      .find((l) => l.startsWith('host='));
    assert.equal(line, `host=${copy.Config.Hostname} mode=copied-env data=from-the-bind-mount later=none`, r.out());
    assert.notEqual(copy.Config.Hostname, original.Config.Hostname);
    // Stolen: the copy's traffic reaches the local program, the original answers its own clients.
    const copyIp = copy.NetworkSettings.Networks[network.name]!.IPAddress;
    await until('the copy port stolen', async () => (await curl(copyIp)) === 'from-local');
    assert.equal(await curl(await target.ip(network.name)), `from-target ${original.Config.Hostname}`);

    r.child.kill('SIGINT');
    assert.equal(await r.done, 130, r.out());
    assert.deepEqual(await waitSessionGone(pid), []);
    const after = await docker().getContainer(target.id).inspect();
    assert.equal(after.State.Running, true);
    assert.equal(after.State.StartedAt, startedAt, 'the original was restarted');
    assert.equal(after.RestartCount, 0);
    assert.equal(await curl('webalias'), `from-target ${original.Config.Hostname}`, 'the alias answers from the original alone again');
  });

  it('after SIGKILL of the CLI the watchdog removes the copy', async () => {
    const r = startMirrord(target.name, ['-f', config(true)], ['node', LOCAL_SERVER]);
    const pid = r.child.pid!;
    await until('the local server under mirrord', async () => r.out().includes('listening'), 90_000);
    const copy = await copyOf(pid);
    assert.ok(copy, r.out());
    const killedAt = Date.now();
    process.kill(-pid, 'SIGKILL');
    await until(
      'the copy removed',
      async () => {
        try {
          await docker().getContainer(copy.Id).inspect();
          return false;
        } catch {
          return true;
        }
      },
      20_000,
    );
    console.log(`# copy removed ${((Date.now() - killedAt) / 1000).toFixed(1)} s after SIGKILL`);
    const after = await docker().getContainer(target.id).inspect();
    assert.equal(after.State.StartedAt, startedAt);
    assert.equal(await curl(await target.ip(network.name)), `from-target ${after.Config.Hostname}`);
  });

  it('a bad copy_target value is one line naming the key, exit 78', async () => {
    const { runCli } = await import('../helpers/cli.js');
    const r = await runCli(['verify-config', '-f', config({ enabled: 'yes' })]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /feature\.copy_target\.enabled/);
  });
});
