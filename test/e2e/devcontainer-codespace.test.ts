import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { codespaceImage, DEVCONTAINER, REPO, run, SOCKET, buildFeature, removeDevContainers } from '../helpers/devcontainer.js';
import { createNetwork, createVolume, docker, RUN_ID, runContainer, TEST_LABEL, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * A Codespaces-like dev container with a Docker target: the non-root `codespace` user (uid 1000,
 * passwordless sudo) in the group of the mounted Docker socket (Docker-outside-of-Docker),
 * CODESPACES=true. The session runs as that user and the layer reaches /etc/ld.so.preload through
 * sudo -n, as the copy of the target's mounted files does (under root's /var/run/secrets). The
 * Kubernetes variant, the kubeconfig as a secret: test/k8s/devcontainer-codespace.test.ts.
 */
const repo = REPO;

describe('a Codespaces-like dev container (codespace user, Docker target)', { timeout: 600_000 }, () => {
  let work = '';
  let net: { name: string; remove(): Promise<void> };
  let vol: { name: string; remove(): Promise<void> };
  let target: TestContainer;
  let cache: TestContainer;
  let devc = '';
  let image = '';
  const idLabel = `dev.mirrord.devcontainer-test=codespace-${RUN_ID}`;
  const asUser = async (args: string[]) => (await run('docker', ['exec', '-u', 'codespace', devc, ...args], { timeout: 60_000 })).stdout;

  before(async () => {
    buildFeature();
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
    vol = await createVolume('e2e-cs-secret');
    // A root-only file at a root-owned path, as a pod's secrets are: the codespace user's daemon copies it through sudo.
    target = await runContainer({
      name: 'e2e-cs-target',
      network: net.name,
      env: { CS_VAR: 'from-the-target' },
      binds: [`${vol.name}:/var/run/secrets/cs`],
      cmd: ['sh', '-c', 'echo s3cret > /var/run/secrets/cs/token && chmod 640 /var/run/secrets/cs/token && exec sleep infinity'],
    });
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
    await removeDevContainers(idLabel, [image]);
    await Promise.all([target, cache].map((c) => c?.remove().catch(() => undefined)));
    await net?.remove().catch(() => undefined);
    await vol?.remove().catch(() => undefined);
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

  it("the target's mounted files are at their paths, root-owned as in the target, written through sudo", async () => {
    assert.equal((await asUser(['stat', '-c', '%u %a', '/var/run/secrets/cs/token'])).trim(), '0 640');
    assert.equal((await asUser(['sudo', '-n', 'cat', '/var/run/secrets/cs/token'])).trim(), 's3cret');
    // The engine's view of the dev container's file system, no layer in between.
    await run('docker', ['cp', `${devc}:/var/run/secrets/cs/token`, work]);
    assert.equal(readFileSync(path.join(work, 'token'), 'utf8'), 's3cret\n');
  });
});
