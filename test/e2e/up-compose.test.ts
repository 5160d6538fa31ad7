import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { startUp as startUpIn, until as untilIn } from '../helpers/up.js';
import { createNetwork, createVolume, docker, listContainers, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * `mirrord up` of a real compose project (test/compose/project: .env, extends, a profile, a build,
 * a local redis, one x-mirrord service) run by the real `docker compose`, against a Docker target
 * with its own env, a volume and a neighbour only it can name.
 */
const exec = promisify(execFile);
const PROJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../compose/project');
const tag = randomBytes(3).toString('hex');
const KEY = `c${tag}`;
const work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-compose-'));

let network: { name: string; remove(): Promise<void> };
let volume: { name: string; remove(): Promise<void> };
let target: TestContainer;
let backend: TestContainer;
let image = '';
const children = new Set<ChildProcess>();
const projects = new Set<string>();

const startUp = (args: string[]) => startUpIn(['-k', KEY, ...args], { TOOLS_IMAGE: image, TARGET: target.name }, children);
const until = (what: string, check: () => Promise<boolean>, ms = 120_000) => untilIn(what, check, ms);

/** Every container of the project, and every one carrying this up's key (agents, guards, sidecars). */
async function left(project: string): Promise<string[]> {
  const mine = [...(await listContainers(`com.docker.compose.project=${project}`)), ...(await listContainers(`dev.mirrord.up=${KEY}`))];
  return [...new Set(mine.map((c) => `${c.Names[0]} ${c.State}`))];
}

async function networksOf(project: string): Promise<string[]> {
  return (await docker().listNetworks({ filters: { label: [`com.docker.compose.project=${project}`] } })).map((n) => n.Name);
}

async function inProbe(project: string, url: string): Promise<string> {
  const [c] = await listContainers(`com.docker.compose.project=${project}`).then((l) => l.filter((x) => x.Labels['com.docker.compose.service'] === 'probe'));
  assert.ok(c, 'the probe service runs');
  const r = await exec('docker', ['exec', c.Id, 'curl', '-sS', '-m', '10', url], { encoding: 'utf8' });
  return r.stdout;
}

async function running(project: string, service: string): Promise<boolean> {
  const l = await listContainers(`com.docker.compose.project=${project}`);
  return l.some((c) => c.Labels['com.docker.compose.service'] === service && c.State === 'running' && /\(healthy\)/.test(c.Status));
}

function project(): string {
  const p = `mup-${tag}-${projects.size}`;
  projects.add(p);
  return p;
}

describe('mirrord up with a compose file', { timeout: 900_000 }, () => {
  before(async () => {
    image = await toolsImage();
    network = await createNetwork('mirrord-up-compose');
    volume = await createVolume('mirrord-up-compose');
    const seed = await runContainer({
      name: 'up-compose-seed',
      binds: [`${volume.name}:/data`],
      cmd: ['sh', '-c', `echo from-the-target-${tag} > /data/hello.txt; sleep infinity`],
    });
    await seed.remove();
    backend = await runContainer({
      name: 'up-compose-backend',
      network: network.name,
      aliases: [`backend-${tag}`],
      cmd: ['sh', '-c', `mkdir -p /w && echo backend-${tag} > /w/index.html && exec python3 -m http.server 8080 --directory /w`],
      waitFor: { tcpPort: 8080 },
    });
    target = await runContainer({
      name: 'up-compose-target',
      network: network.name,
      env: { SHARED: 'from-target', TARGET_ONLY: `yes-${tag}` },
      binds: [`${volume.name}:/data`],
      cmd: ['python3', '-m', 'http.server', '9000'],
      waitFor: { tcpPort: 9000 },
    });
  });

  after(async () => {
    for (const c of children) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const p of projects) await exec('docker', ['compose', '-p', p, 'down', '-t', '0', '--remove-orphans']).catch(() => undefined);
    await runCli(['up', 'down', '-k', KEY], { timeoutMs: 60_000 }).catch(() => undefined);
    for (const c of [target, backend]) await c?.remove().catch(() => undefined);
    await volume?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it("the x-mirrord service has the target's names, env (under its own), files; keeps its alias and port; reaches the local redis; SIGINT: 130, nothing left", async () => {
    const p = project();
    const up = startUp(['-f', path.join(PROJECT_DIR, 'compose.yaml'), '-p', p, '--profile', 'probe', '--build', '--no-color']);
    await until(
      'the probe service to run',
      async () =>
        (await running(p, 'app')) &&
        (await listContainers(`com.docker.compose.project=${p}`)).some((c) => c.Labels['com.docker.compose.service'] === 'probe' && c.State === 'running'),
      300_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout: ${up.out()}\nstderr: ${up.err()}`);
    });
    // The other services reach it by its alias, and the port it declared is published.
    const env = JSON.parse(await inProbe(p, 'http://app-alias:8000/env')) as Record<string, string>;
    assert.equal(env.TARGET_ONLY, `yes-${tag}`, "the target's env");
    assert.equal(env.SHARED, 'from-compose', 'the keys the file declares win over the target');
    assert.equal(env.GREETING, 'hello-from-dotenv', '.env interpolation');
    assert.equal(env.FROM_BASE, 'extended', 'extends');
    assert.equal(env.OVERRIDDEN, 'by-mirrord', 'env.override');
    assert.equal(await inProbe(p, `http://app:8000/fetch?url=http://backend-${tag}:8080/`), `backend-${tag}\n`, 'a neighbour only the target can name');
    assert.equal(await inProbe(p, 'http://app:8000/file?path=/data/hello.txt'), `from-the-target-${tag}\n`, "a file of the target's volume");
    assert.equal(await inProbe(p, 'http://app:8000/redis'), '+PONG', 'the local redis service');
    const targetHost = (await docker().getContainer(target.id).inspect()).Config.Hostname;
    assert.equal(await inProbe(p, 'http://app:8000/hostname'), targetHost, "feature.hostname: the target's host name");
    const [sidecar] = (await listContainers(`com.docker.compose.project=${p}`)).filter((c) => c.Labels['dev.mirrord.agent'] === 'sidecar');
    const published = sidecar!.Ports.find((x) => x.PrivatePort === 8000 && x.PublicPort);
    assert.ok(published, 'the port is published by the sidecar');
    const fromHost = await fetch(`http://127.0.0.1:${published.PublicPort}/env`).then((r) => r.json() as Promise<Record<string, string>>);
    assert.equal(fromHost.TARGET_ONLY, `yes-${tag}`);
    assert.match(up.out(), /app-1\s+\| app listening on 8000/, "Compose's prefixed output");

    process.kill(-up.child.pid!, 'SIGINT');
    assert.equal(await up.done, 130, up.err());
    assert.deepEqual(await left(p), []);
    assert.deepEqual(await networksOf(p), []);
  });

  it('SIGTERM to up alone: 143 and nothing left; SIGKILL of up: the watchdog removes the project', async () => {
    const p = project();
    const up = startUp(['-f', path.join(PROJECT_DIR, 'compose.yaml'), '-p', p]);
    await until('app to be healthy', () => running(p, 'app'), 300_000);
    up.child.kill('SIGTERM');
    assert.equal(await up.done, 143, up.err());
    assert.deepEqual(await left(p), []);

    const q = project();
    const killed = startUp(['-f', path.join(PROJECT_DIR, 'compose.yaml'), '-p', q]);
    await until('app to be healthy', () => running(q, 'app'), 300_000);
    killed.child.kill('SIGKILL');
    await killed.done;
    // docs/up.md: within the services' stop_grace_period (2 s here) and a few seconds of Compose.
    await until('the project to be gone', async () => (await left(q)).length === 0 && (await networksOf(q)).length === 0, 60_000);
  });

  it('--wait returns with the project running; mirrord up down removes it', async () => {
    const p = project();
    const r = await runCli(['up', '--wait', '-k', KEY, '-f', path.join(PROJECT_DIR, 'compose.yaml'), '-p', p], {
      env: { TOOLS_IMAGE: image, TARGET: target.name },
      timeoutMs: 300_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /every service is running/);
    assert.ok(await running(p, 'app'), 'app runs, healthy, when --wait returns');
    const down = await runCli(['up', 'down', '-k', KEY], { timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await left(p), []);
    assert.deepEqual(await networksOf(p), []);
  });

  it("a service exiting 3 stops the others: up exits 3, nothing left; its config's internal_proxy applies", async () => {
    const p = project();
    const file = path.join(work, 'exit3.yaml');
    // The session settings of an up service are exec's (sessionSettings): internal_proxy.log_* reach its sidecar.
    const logs = mkdtempSync(path.join(work, 'intproxy-logs-'));
    writeFileSync(
      file,
      `services:
  job:
    image: ${image}
    pull_policy: never
    command: [sh, -c, 'echo "job sees $$TARGET_ONLY"; sleep 2; exit 3']
    x-mirrord:
      target: docker/${target.name}
      config:
        internal_proxy: { log_destination: ${logs}/, log_level: debug }
  idle:
    image: ${image}
    pull_policy: never
    init: true
    command: [sleep, infinity]
`,
    );
    const up = startUp(['-f', file, '-p', p, '--no-color']);
    assert.equal(await up.done, 3, up.err());
    assert.match(up.out(), new RegExp(`job sees yes-${tag}`));
    assert.deepEqual(await left(p), []);
    const written = readdirSync(logs).filter((f) => f.startsWith('mirrord-intproxy-'));
    assert.equal(written.length, 1, `intproxy logs: ${written.join(', ')}`);
    assert.match(readFileSync(path.join(logs, written[0]!), 'utf8'), /debug/);
  });

  it('an x-mirrord naming an unknown target: one line, nothing created', async () => {
    const p = project();
    const file = path.join(work, 'unknown.yaml');
    writeFileSync(
      file,
      `services:\n  web:\n    image: ${image}\n    command: [sleep, infinity]\n    x-mirrord:\n      target: docker/no-such-container-${tag}\n`,
    );
    const r = await runCli(['up', '-k', KEY, '-f', file, '-p', p], { timeoutMs: 120_000 });
    assert.notEqual(r.code, 0);
    const lines = r.stderr.split('\n').filter((l) => l.trim());
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`no-such-container-${tag}`));
    assert.deepEqual(await left(p), []);
  });

  it('an unknown x-mirrord key: its path, exit 78', async () => {
    const file = path.join(work, 'badkey.yaml');
    writeFileSync(file, `services:\n  web:\n    image: ${image}\n    x-mirrord:\n      target: docker/${target.name}\n      colour: blue\n`);
    const r = await runCli(['up', '-k', KEY, '-f', file, '-p', project()], { timeoutMs: 60_000 });
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /services\.web\.x-mirrord\.colour: unknown key/);
  });

  it('Compose missing or too old: one line naming the version needed', async () => {
    const file = path.join(work, 'any.yaml');
    writeFileSync(file, `services:\n  web:\n    image: ${image}\n    x-mirrord: true\n`);
    for (const [name, script] of [
      ['old', 'if [ "$1" = compose ]; then echo "Docker Compose version v2.17.3"; exit 0; fi; exec docker "$@"'],
      ['missing', `if [ "$1" = compose ]; then echo "docker: 'compose' is not a docker command." >&2; exit 1; fi; exec docker "$@"`],
    ] as const) {
      const bin = mkdtempSync(path.join(work, `${name}-`));
      const realDocker = (await exec('sh', ['-c', 'command -v docker'], { encoding: 'utf8' })).stdout.trim();
      writeFileSync(path.join(bin, 'docker'), `#!/bin/sh\n${script.replace('exec docker', `exec ${realDocker}`)}\n`);
      chmodSync(path.join(bin, 'docker'), 0o755);
      const r = await runCli(['up', '-k', KEY, '-f', file], { env: { PATH: `${bin}:${process.env.PATH}` }, timeoutMs: 60_000 });
      assert.notEqual(r.code, 0);
      const lines = r.stderr.split('\n').filter((l) => l.trim());
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /needs Docker Compose >= 2\.20/);
      if (name === 'old') assert.match(lines[0]!, /2\.17\.3 found/);
    }
  });
});
