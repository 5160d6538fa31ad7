import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  createNetwork,
  createVolume,
  docker,
  listContainers,
  RUN_ID,
  runContainer,
  TEST_LABEL,
  toolsImage,
  type TestContainer,
} from '../helpers/docker-fixtures.js';
import { buildFeature, removeDevContainers } from '../helpers/devcontainer.js';

/**
 * The devcontainer feature with the real `devcontainer` CLI (@devcontainers/cli, a pinned dev
 * dependency) on a locally built image, offline (--buildkit never, no registry feature): `devcontainer
 * up` of a workspace using the feature from its local path, the Docker socket mounted, the target a
 * Docker container on a test network. Every process of the dev container, `docker exec` ones
 * included, then runs in the target's context.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEVCONTAINER = path.join(repo, 'node_modules/.bin/devcontainer');
const run = promisify(execFile);

interface Up {
  outcome: string;
  containerId: string;
}

describe('the devcontainer feature under devcontainer up', { timeout: 600_000 }, () => {
  let work = '';
  let net: { name: string; remove(): Promise<void> };
  let vol: { name: string; remove(): Promise<void> };
  let target: TestContainer;
  const neighbours: TestContainer[] = [];
  let devc = '';
  const images = new Set<string>();
  const workspace = () => path.join(work, 'ws');

  /** A workspace with this devcontainer.json (the feature copied beside it when it uses it). */
  function writeWorkspace(dir: string, config: object, withFeature: boolean): void {
    mkdirSync(path.join(dir, '.devcontainer'), { recursive: true });
    if (withFeature) cpSync(path.join(repo, 'dist/devcontainer-feature/src/mirrord'), path.join(dir, '.devcontainer/mirrord'), { recursive: true });
    writeFileSync(path.join(dir, '.devcontainer/devcontainer.json'), JSON.stringify(config, null, 2));
  }

  async function up(dir: string): Promise<{ id: string; ms: number; log: string }> {
    const started = Date.now();
    const r = await run(
      DEVCONTAINER,
      [
        'up',
        '--workspace-folder',
        dir,
        '--buildkit',
        'never',
        '--update-remote-user-uid-default',
        'never',
        '--id-label',
        `dev.mirrord.devcontainer-test=${path.basename(dir)}-${RUN_ID}`,
      ],
      { maxBuffer: 64 << 20, timeout: 300_000 },
    ).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`devcontainer up failed\n${err.stdout}\n${err.stderr}`));
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Up;
    assert.equal(res.outcome, 'success', r.stderr);
    const info = await docker().getContainer(res.containerId).inspect();
    images.add(info.Config.Image);
    return { id: res.containerId, ms: Date.now() - started, log: r.stderr };
  }

  const dockerExec = async (args: string[]) => (await run('docker', ['exec', devc, ...args], { timeout: 60_000 })).stdout;

  before(async () => {
    buildFeature();
    work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-devc-'));
    net = await createNetwork('e2e-devc');
    neighbours.push(
      await runContainer({
        name: 'e2e-devc-cache',
        network: net.name,
        aliases: ['devc-cache'],
        cmd: ['redis-server', '--protected-mode', 'no'],
        waitFor: { tcpPort: 6379 },
      }),
    );
    neighbours.push(
      await runContainer({
        name: 'e2e-devc-web',
        network: net.name,
        aliases: ['devc-web'],
        cmd: ['python3', '-m', 'http.server', '8000', '--directory', '/etc'],
        waitFor: { tcpPort: 8000 },
      }),
    );
    vol = await createVolume('e2e-devc-data');
    target = await runContainer({
      name: 'e2e-devc-target',
      network: net.name,
      env: { DEVC_VAR: 'from-the-target' },
      binds: [`${vol.name}:/srv/devc-data`],
      // Its own server on 8081: what a mirrored session leaves answering.
      cmd: ['sh', '-c', 'echo from-the-volume > /srv/devc-data/greeting.txt && exec python3 -m http.server 8081 --directory /srv/devc-data'],
      waitFor: { tcpPort: 8081 },
    });
    const base = {
      image: await toolsImage(),
      mounts: ['source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind'],
      // The test label: the run's cleanup removes the dev containers like every other test container.
      runArgs: ['--label', `${TEST_LABEL}=${RUN_ID}`],
    };
    writeWorkspace(workspace(), { ...base, features: { './mirrord': { target: `docker/${target.name}` } } }, true);
    // Found by postStartCommand from the workspace folder, as mirrord exec finds it: incoming traffic is stolen.
    writeFileSync(path.join(workspace(), 'mirrord.json'), JSON.stringify({ feature: { network: { incoming: { mode: 'steal' } } } }));
    writeWorkspace(path.join(work, 'plain'), base, false);
  });

  after(async () => {
    await removeDevContainers('dev.mirrord.devcontainer-test', [...images], RUN_ID);
    await Promise.all([target, ...neighbours].map((c) => c?.remove().catch(() => undefined)));
    await net?.remove().catch(() => undefined);
    await vol?.remove().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('devcontainer up installs the feature and starts the session from postStartCommand', async (t) => {
    const plain = await up(path.join(work, 'plain'));
    const withFeature = await up(workspace());
    devc = withFeature.id;
    // postStartCommand starts it, from the workspace folder (so with its mirrord.json): at the first
    // start the entrypoint leaves it alone.
    assert.match(withFeature.log, /mirrord: session on docker\/e2e-devc-target-\w+ \(\w+\) live \(daemon \d+\); every new process runs in its context/);
    assert.doesNotMatch(withFeature.log, /is already live/);
    t.diagnostic(`devcontainer up: ${plain.ms} ms without the feature, ${withFeature.ms} ms with it (image build and session start)`);
    assert.equal((await dockerExec(['cat', '/etc/ld.so.preload'])).trim(), '/usr/local/lib/mirrord/layer/build/libmirrord_layer.so');
  });

  it('docker exec: redis-cli reaches a neighbour by a name only the target resolves', async () => {
    assert.equal((await dockerExec(['redis-cli', '-h', 'devc-cache', 'ping'])).trim(), 'PONG');
  });

  it("docker exec env -i: the target's variables, the dev container's PATH", async () => {
    const out = await dockerExec(['env', '-i', '/bin/sh', '-c', 'echo "$DEVC_VAR|$PATH"']);
    assert.equal(out.trim(), 'from-the-target|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  });

  it("the target's volume is copied into the dev container at its path at session start", async () => {
    // docker cp reads the dev container's own file system through the engine: no layer involved.
    const copy = path.join(work, 'copied');
    mkdirSync(copy, { recursive: true });
    await run('docker', ['cp', `${devc}:/srv/devc-data/greeting.txt`, copy]);
    assert.equal(readFileSync(path.join(copy, 'greeting.txt'), 'utf8'), 'from-the-volume\n');
    // With the layer, the same path reads that copy (it is local now): a change made in the dev container shows.
    await dockerExec(['sh', '-c', 'echo changed-here >> /srv/devc-data/greeting.txt']);
    assert.equal(await dockerExec(['cat', '/srv/devc-data/greeting.txt']), 'from-the-volume\nchanged-here\n');
    assert.equal((await target.exec(['cat', '/srv/devc-data/greeting.txt'])).stdout, 'from-the-volume\n');
  });

  it('devcontainer exec: curl and python reach neighbours by name, with the target env', async () => {
    const script = [
      'echo "$DEVC_VAR"',
      'curl -sS -m 10 -o /dev/null -w "%{http_code}\\n" http://devc-web:8000/hostname',
      "python3 -c \"import socket; s = socket.create_connection(('devc-cache', 6379)); s.sendall(b'PING\\r\\n'); print(s.recv(16).decode().strip())\"",
    ].join('; ');
    const r = await run(
      DEVCONTAINER,
      ['exec', '--workspace-folder', workspace(), '--id-label', `dev.mirrord.devcontainer-test=ws-${RUN_ID}`, 'sh', '-c', script],
      { timeout: 60_000 },
    );
    assert.deepEqual(r.stdout.trim().split('\n'), ['from-the-target', '200', '+PONG']);
  });

  it("a server started in the dev container answers the target's incoming requests (steal, from the config file)", async () => {
    await dockerExec(['sh', '-c', 'mkdir -p /tmp/www && echo from-the-devcontainer > /tmp/www/who']);
    await run('docker', ['exec', '-d', devc, 'sh', '-c', 'exec python3 -m http.server 8080 --directory /tmp/www 2>/tmp/stolen.log']);
    // The server subscribes when it listens; until then the target refuses port 8080 (it has no server there).
    let answer = '';
    let curlErr = '';
    for (let i = 0; i < 100 && answer !== 'from-the-devcontainer'; i++) {
      const r = await neighbours[0]!.exec(['curl', '-sS', '-m', '5', `http://${target.name}:8080/who`]);
      answer = r.stdout.trim();
      curlErr = r.stderr;
      if (answer !== 'from-the-devcontainer') await new Promise((res) => setTimeout(res, 200));
    }
    const why = async () =>
      `curl: ${curlErr}\nserver: ${await dockerExec(['cat', '/tmp/stolen.log']).catch(() => '')}\nsession: ${await dockerExec(['mirrord', 'devcontainer', 'logs']).catch(() => '')}`;
    assert.equal(answer, 'from-the-devcontainer', answer === 'from-the-devcontainer' ? '' : await why());
  });

  it('mirror: a server started in the dev container gets a copy of the requests the target answers', async () => {
    // Another session in the same dev container, from another config file: stop, then start as postStartCommand does.
    writeFileSync(path.join(work, 'mirror.json'), JSON.stringify({ feature: { network: { incoming: { mode: 'mirror' } } } }));
    await run('docker', ['cp', path.join(work, 'mirror.json'), `${devc}:/tmp/mirror.json`]);
    await dockerExec(['mirrord', 'devcontainer', 'stop']);
    const started = await run('docker', ['exec', devc, 'mirrord', 'devcontainer', 'start', '-t', `docker/${target.name}`, '-f', '/tmp/mirror.json']);
    assert.match(started.stdout, /^mirrord: session on docker\/e2e-devc-target-\w+ \(\w+\) live/);
    await run('docker', ['exec', '-d', devc, 'sh', '-c', 'cd /tmp/www && exec python3 -m http.server 8081 2>/tmp/mirrored.log']);
    let seen = '';
    for (let i = 0; i < 100 && !seen.includes('GET /greeting.txt?n='); i++) {
      // The target's own server answers each request; the copy reaches the dev container's.
      const r = await neighbours[0]!.exec(['curl', '-sS', '-m', '5', `http://${target.name}:8081/greeting.txt?n=${i}`]);
      assert.equal(r.stdout, 'from-the-volume\n');
      seen = await dockerExec(['cat', '/tmp/mirrored.log']).catch(() => '');
      if (!seen.includes('GET /greeting.txt?n=')) await new Promise((res) => setTimeout(res, 200));
    }
    assert.match(seen, /"GET \/greeting\.txt\?n=\d+ HTTP\/1\.1" 404/);
  });

  it('docker restart: processes run while the session is down, and it comes back by itself', async () => {
    await docker().getContainer(devc).restart({ t: 5 });
    // Right after the restart the old session file is stale (or already gone): nothing breaks.
    assert.equal((await dockerExec(['sh', '-c', 'echo ok'])).trim(), 'ok');
    let status = { code: 1, out: '' };
    for (let i = 0; i < 120 && status.code !== 0; i++) {
      status = await run('docker', ['exec', devc, 'mirrord', 'devcontainer', 'status']).then(
        (r) => ({ code: 0, out: r.stdout }),
        (e: { code?: number; stdout?: string }) => ({ code: e.code ?? 1, out: e.stdout ?? '' }),
      );
      if (status.code !== 0) await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(status.code, 0, `no session after the restart: ${status.out}\n${await dockerExec(['cat', '/run/mirrord/entrypoint.log']).catch(() => '')}`);
    assert.equal((await dockerExec(['redis-cli', '-h', 'devc-cache', 'ping'])).trim(), 'PONG');
  });

  it('the CLI in the dev container reports the session; docker stop ends it and its agent', async () => {
    assert.match(
      await dockerExec(['mirrord', 'devcontainer', 'status']),
      /^mirrord: session on docker\/e2e-devc-target-\w+ .* live \(daemon \d+, since .*, preload all\)\n$/,
    );
    await docker().getContainer(devc).stop({ t: 5 });
    // The agent leaves when its link closes (the daemon died with the container); Docker removes it.
    const agents = () => listContainers(`dev.mirrord.target=${target.id}`);
    let left = await agents();
    for (let i = 0; i < 150 && left.length; i++) {
      await new Promise((r) => setTimeout(r, 200));
      left = await agents();
    }
    assert.deepEqual(
      left.map((c) => c.Names),
      [],
    );
  });
});
