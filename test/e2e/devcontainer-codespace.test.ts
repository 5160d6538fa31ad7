import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createNetwork, docker, listContainers, RUN_ID, runContainer, TEST_LABEL, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * A Codespaces-like dev container with a Docker target: the non-root `codespace` user (uid 1000,
 * passwordless sudo) in the group of the mounted Docker socket (Docker-outside-of-Docker),
 * CODESPACES=true. The session runs as that user and the layer reaches /etc/ld.so.preload through
 * sudo -n. (The Kubernetes variant, the kubeconfig as a secret, is not here yet.)
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEVCONTAINER = path.join(repo, 'node_modules/.bin/devcontainer');
const SOCKET = '/var/run/docker.sock';
const run = promisify(execFile);

async function codespaceImage(base: string): Promise<string> {
  const gid = statSync(SOCKET).gid;
  const dockerfile =
    `FROM ${base}\n` +
    `RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo >/dev/null && rm -rf /var/lib/apt/lists/* \\\n` +
    ` && useradd -m -u 1000 -s /bin/bash codespace && echo 'codespace ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/codespace \\\n` +
    ` && (getent group ${gid} >/dev/null || groupadd -g ${gid} docker-host) && usermod -aG $(getent group ${gid} | cut -d: -f1) codespace\n`;
  const tag = `mirrord-test-devc-codespace:${createHash('sha256').update(dockerfile).digest('hex').slice(0, 12)}`;
  const exists = await docker()
    .getImage(tag)
    .inspect()
    .then(
      () => true,
      () => false,
    );
  if (!exists) execFileSync('docker', ['build', '-q', '-t', tag, '-'], { input: dockerfile, stdio: ['pipe', 'ignore', 'inherit'], timeout: 300_000 });
  return tag;
}

describe('a Codespaces-like dev container (codespace user, Docker target)', { timeout: 600_000 }, () => {
  let work = '';
  let net: { name: string; remove(): Promise<void> };
  let target: TestContainer;
  let cache: TestContainer;
  let devc = '';
  let image = '';
  const idLabel = `dev.mirrord.devcontainer-test=codespace-${RUN_ID}`;
  const asUser = async (args: string[]) => (await run('docker', ['exec', '-u', 'codespace', devc, ...args], { timeout: 60_000 })).stdout;

  before(async () => {
    execFileSync(process.execPath, ['scripts/build-sea.mjs', '--if-stale'], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync(process.execPath, ['scripts/build-feature.mjs'], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
    const base = await codespaceImage(await toolsImage());
    work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-codespace-'));
    net = await createNetwork('e2e-cs');
    cache = await runContainer({
      name: 'e2e-cs-cache',
      network: net.name,
      aliases: ['cs-cache'],
      cmd: ['redis-server', '--protected-mode', 'no'],
      waitFor: { tcpPort: 6379 },
    });
    target = await runContainer({ name: 'e2e-cs-target', network: net.name, env: { CS_VAR: 'from-the-target' }, cmd: ['sleep', 'infinity'] });
    mkdirSync(path.join(work, '.devcontainer'));
    cpSync(path.join(repo, 'dist/devcontainer-feature/src/mirrord'), path.join(work, '.devcontainer/mirrord'), { recursive: true });
    const config = {
      image: base,
      remoteUser: 'codespace',
      containerEnv: { CODESPACES: 'true' },
      features: { './mirrord': { target: `docker/${target.name}` } },
      mounts: [`source=${SOCKET},target=/var/run/docker.sock,type=bind`],
      runArgs: ['--label', `${TEST_LABEL}=${RUN_ID}`],
    };
    writeFileSync(path.join(work, '.devcontainer/devcontainer.json'), JSON.stringify(config, null, 2));
  });

  after(async () => {
    const d = docker();
    for (const c of await listContainers(idLabel))
      await d
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    if (image.startsWith('vsc-'))
      await d
        .getImage(image)
        .remove({ force: true })
        .catch(() => undefined);
    await Promise.all([target, cache].map((c) => c?.remove().catch(() => undefined)));
    await net?.remove().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('devcontainer up: the session starts as codespace and the layer is preloaded through sudo', async () => {
    const r = await run(
      DEVCONTAINER,
      ['up', '--workspace-folder', work, '--buildkit', 'never', '--update-remote-user-uid-default', 'never', '--id-label', idLabel],
      { maxBuffer: 64 << 20, timeout: 300_000 },
    ).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`devcontainer up failed\n${err.stdout}\n${err.stderr}`));
    devc = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { containerId: string }).containerId;
    image = (await docker().getContainer(devc).inspect()).Config.Image;
    assert.match(await asUser(['mirrord', 'devcontainer', 'status']), /live \(daemon \d+, since .*, preload all\)/);
    const pid = (await asUser(['sh', '-c', 'cat /run/mirrord/daemon.json'])).match(/"pid":(\d+)/)![1];
    assert.equal((await asUser(['ps', '-o', 'user=', '-p', pid!])).trim(), 'codespace');
    assert.equal((await asUser(['cat', '/etc/ld.so.preload'])).trim(), '/usr/local/lib/mirrord/layer/build/libmirrord_layer.so');
  });

  it('the user reaches a neighbour by name and has the target env; CODESPACES stays the dev container’s', async () => {
    assert.equal((await asUser(['redis-cli', '-h', 'cs-cache', 'ping'])).trim(), 'PONG');
    assert.equal((await asUser(['sh', '-c', 'echo "$CS_VAR $CODESPACES"'])).trim(), 'from-the-target true');
  });

  it('sudo itself is not intercepted, the root program it runs is', async () => {
    // sudo is set-user-ID (the layer stays inert in it) and resets the environment; its child
    // gets the layer from /etc/ld.so.preload and the target's variables again.
    assert.equal((await asUser(['sudo', '-n', 'sh', '-c', 'echo "$(id -u) $CS_VAR"; redis-cli -h cs-cache ping'])).trim(), '0 from-the-target\nPONG');
  });
});
