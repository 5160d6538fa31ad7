import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliResult } from '../helpers/cli.js';
import { waitSessionGone } from '../helpers/sessions.js';
import { createVolume, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * Container mode copies the target's volumes and bind mounts into the user's container at the same
 * paths before its program starts. The checks read the copies with the layer switched off
 * (`env -u LD_PRELOAD`), so only a real file in the container can answer.
 */
const SETTINGS = '{"level":"debug","feature":"mounts"}';
let image = '';
let volume: { name: string; remove(): Promise<void> };
let target: TestContainer;
let hostDir = '';
let userDir = '';
let cfgDir = '';
let singleDir = '';

const noLayer = (cmd: string) => `env -u LD_PRELOAD ${cmd}`;

async function container(args: string[], opts: { config?: object; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult & { pid: number }> {
  let pid = 0;
  const cfg: string[] = [];
  if (opts.config) {
    const file = path.join(cfgDir, `cfg-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(opts.config));
    cfg.push('-f', file);
  }
  const r = await runCli(['container', ...cfg, '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', ...args], {
    env: opts.env,
    timeoutMs: 120_000,
    onSpawn: (c) => (pid = c.pid!),
  });
  return { ...r, pid };
}

describe("mirrord container: the target's mounted files", { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    volume = await createVolume('mirrord-sync');
    hostDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-sync-bind-'));
    mkdirSync(path.join(hostDir, 'sub'));
    writeFileSync(path.join(hostDir, 'sub/b.txt'), 'bind-content');
    symlinkSync('sub/b.txt', path.join(hostDir, 'link'));
    writeFileSync(path.join(hostDir, 'run.sh'), '#!/bin/sh\necho run\n');
    chmodSync(path.join(hostDir, 'run.sh'), 0o750);
    userDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-sync-user-'));
    singleDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-sync-single-'));
    writeFileSync(path.join(singleDir, 'single.conf'), 'single-file');
    writeFileSync(path.join(userDir, 'mine.txt'), 'user-content');
    cfgDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-sync-cfg-'));
    target = await runContainer({
      name: 'sync-target',
      binds: [`${volume.name}:/data/shared`, `${hostDir}:/srv/bind:ro`, `${singleDir}/single.conf:/etc/app/single.conf:ro`],
      cmd: [
        'sh',
        '-c',
        `printf '%s' '${SETTINGS}' > /data/shared/settings.json && chown 1234:2345 /data/shared/settings.json && chmod 640 /data/shared/settings.json && echo ready && exec sleep 100000`,
      ],
      waitFor: { log: /ready/ },
    });
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
    await volume?.remove().catch(() => undefined);
    for (const d of [hostDir, userDir, cfgDir, singleDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('a volume, a bind-mounted directory and a bind-mounted file of the target are in the container at the same paths, with modes, owners and symlinks', async () => {
    const script = [
      noLayer('cat /data/shared/settings.json'),
      'echo',
      noLayer('stat -c "%a %u:%g" /data/shared/settings.json'),
      noLayer('readlink /srv/bind/link'),
      noLayer('cat /srv/bind/link'),
      'echo',
      noLayer('stat -c %a /srv/bind/run.sh'),
      noLayer('cat /etc/app/single.conf'),
    ].join('; ');
    const r = await container([image, 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [SETTINGS, '640 1234:2345', 'sub/b.txt', 'bind-content', '750', 'single-file']);
    assert.deepEqual(await waitSessionGone(r.pid), []);

    // Without the sync the file is not in the container: the answer above came from the copy.
    const off = await container([image, 'sh', '-c', noLayer('cat /data/shared/settings.json')], { config: { container: { mounts: false } } });
    assert.notEqual(off.code, 0);
    assert.match(off.stderr, /No such file or directory/);
  });

  it('programs under the layer read the copy too (fs mode read): a change made in the container is seen there, the target is untouched', async () => {
    const r = await container([image, 'sh', '-c', `${noLayer("sh -c 'echo changed > /data/shared/settings.json'")}; cat /data/shared/settings.json`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'changed\n');
    assert.equal((await target.exec(['cat', '/data/shared/settings.json'])).stdout, SETTINGS);
  });

  it('a -v of the user at the same path wins, and nothing is written into it', async () => {
    const r = await container([
      '-v',
      `${userDir}:/srv/bind`,
      image,
      'sh',
      '-c',
      `${noLayer('cat /srv/bind/mine.txt')}; echo; ${noLayer('ls /srv/bind')}; ${noLayer('cat /data/shared/settings.json')}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['user-content', 'mine.txt', SETTINGS]);
    assert.deepEqual(readdirSync(userDir), ['mine.txt']);
  });

  it('files over container.mounts.max_size stop the run with one line, and leave nothing behind', async () => {
    const name = `mirrord-sync-toolarge-${process.pid}`;
    const r = await container(['--name', name, image, 'true'], { config: { container: { mounts: { max_size: '16B' } } } });
    assert.equal(r.code, 78, r.stderr);
    assert.match(
      r.stderr,
      /^mirrord: the target's mounted files are larger than container\.mounts\.max_size \(16 B\): at least \d+ B under \/(data\/shared|srv\/bind)\. Raise container\.mounts\.max_size.*\n$/,
    );
    assert.deepEqual(await waitSessionGone(r.pid), []);
    await assert.rejects(docker().getContainer(name).inspect(), /no such container/i);
  });

  it('works against DOCKER_HOST=tcp://… (the engine reached over TCP, not its socket)', async (t) => {
    if (process.env.DOCKER_HOST && !process.env.DOCKER_HOST.startsWith('unix://')) return t.skip('DOCKER_HOST is already remote');
    const socketPath = process.env.DOCKER_HOST?.slice('unix://'.length) ?? '/var/run/docker.sock';
    // A plain TCP relay to the engine's socket: every API call, attach, exec and archive of the run crosses it.
    const open = new Set<net.Socket>();
    const relay = net.createServer((c) => {
      const up = net.connect(socketPath);
      open.add(c).add(up);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
    const port = (relay.address() as net.AddressInfo).port;
    try {
      const r = await container([image, 'sh', '-c', noLayer('cat /data/shared/settings.json')], { env: { DOCKER_HOST: `tcp://127.0.0.1:${port}` } });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, SETTINGS);
      assert.deepEqual(await waitSessionGone(r.pid), []);
    } finally {
      relay.close();
      for (const s of open) s.destroy();
    }
  });
});
