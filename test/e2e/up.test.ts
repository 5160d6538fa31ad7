import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { createNetwork, docker, listContainers, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';
import { waitSessionGone } from '../helpers/sessions.js';
import { startUp as startUpIn, until } from '../helpers/up.js';

/**
 * `mirrord up` against real containers: two targets on one network, each with a neighbour only it
 * can name and its own env, and services run with `exec` and `container`.
 */
const tag = randomBytes(3).toString('hex');
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-'));
const KEY = `k${tag}`;
const PORT = 8080;
const SLEEP = 300 + (parseInt(tag, 16) % 600); // unique on the host: other test files run programs beside this one

let network: { name: string; remove(): Promise<void> };
let a: TestContainer;
let b: TestContainer;
let client: TestContainer;
const others: TestContainer[] = [];
let image = '';
const children = new Set<ChildProcess>();

function upFile(name: string, yaml: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

const startUp = (args: string[]) => startUpIn(args, {}, children);

/** Every container carrying this up's label (agents, guards, sidecars, user containers). */
async function leftByLabel(key = KEY): Promise<string[]> {
  return (await listContainers(`dev.mirrord.up=${key}`)).map((c) => `${c.Names[0]} ${c.State}`);
}

describe('mirrord up with mirrord-up.yaml', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    network = await createNetwork('mirrord-up');
    others.push(
      await runContainer({
        name: 'up-cache-a',
        network: network.name,
        aliases: [`cache-a-${tag}`],
        cmd: ['redis-server', '--protected-mode', 'no'],
        waitFor: { tcpPort: 6379 },
      }),
    );
    others.push(
      await runContainer({
        name: 'up-web-b',
        network: network.name,
        aliases: [`web-b-${tag}`],
        cmd: ['sh', '-c', 'mkdir -p /srv && echo only-b-names-me > /srv/index.html && exec python3 -m http.server 8000 --directory /srv'],
        waitFor: { tcpPort: 8000 },
      }),
    );
    a = await runContainer({
      name: 'up-target-a',
      network: network.name,
      env: { WHO: 'target-a' },
      cmd: ['node', '-e', `require('http').createServer((q, s) => s.end('from-target ' + q.url)).listen(${PORT})`],
      waitFor: { tcpPort: PORT },
    });
    b = await runContainer({ name: 'up-target-b', network: network.name, env: { WHO: 'target-b' }, cmd: ['sleep', 'infinity'] });
    client = await runContainer({ name: 'up-client', network: network.name, cmd: ['sleep', 'infinity'] });
  });

  after(async () => {
    for (const c of children) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const c of [a, b, client, ...others]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it('three services on two targets (two exec, one container): names, env, prefixed output; one exiting 3 stops the others, exit 3, nothing left', async () => {
    const file = upFile(
      'three.yaml',
      `# every service reaches a neighbour only its own target can name
services:
  alpha:
    target: docker/${a.name}
    default_mode: mirror
    run:
      type: exec
      command: [sh, -c, 'echo "alpha who=$WHO key={{ key }} host=$(uname -n)"; redis-cli -h cache-a-${tag} ping; sleep 30']
  beta:
    target: { path: docker/${b.name} }
    default_mode: mirror
    run:
      type: exec
      command: [sh, -c, 'echo "beta who=$WHO"; curl -s http://web-b-${tag}:8000/; sleep 4; exit 3']
  gamma:
    target: docker/${a.name}
    default_mode: mirror
    run:
      type: container
      command: [docker, run, --rm, ${image}, sh, -c, 'echo "gamma who=$WHO host=$(uname -n)"; redis-cli -h cache-a-${tag} ping; sleep 30']
`,
    );
    const started = Date.now();
    const up = startUp(['-f', file, '-k', KEY, '--no-color']);
    const code = await up.done;
    const out = up.out();
    assert.equal(code, 3, `exit ${code}\nstdout:\n${out}\nstderr:\n${up.err()}`);
    // The other two were stopped, not waited for (they sleep 30 s).
    assert.ok(Date.now() - started < 28_000, `up took ${Date.now() - started} ms: the others were not stopped`);
    const lines = out.split('\n');
    // feature.hostname (on by default): both the process and the container report target a's host name.
    const hostA = (await docker().getContainer(a.id).inspect()).Config.Hostname;
    assert.ok(lines.includes(`alpha | alpha who=target-a key=${KEY} host=${hostA}`), out);
    assert.ok(lines.includes('alpha | PONG'), out);
    assert.ok(lines.includes('beta  | beta who=target-b'), out);
    assert.ok(lines.includes('beta  | only-b-names-me'), out);
    assert.ok(lines.includes(`gamma | gamma who=target-a host=${hostA}`), out);
    assert.ok(lines.includes('gamma | PONG'), out);
    assert.deepEqual(await waitSessionGone(up.child.pid!), []);
    assert.deepEqual(await leftByLabel(), []);
  });

  it('split mode: the default filter sends requests carrying baggage mirrord-session=KEY to the local service, others to the target', async () => {
    const server = path.join(dir, 'server.js');
    writeFileSync(server, `require('http').createServer((q, s) => s.end('from-local ' + q.url)).listen(${PORT}, () => console.log('listening'))`);
    const file = upFile(
      'split.yaml',
      `services:
  web:
    target: docker/${a.name}
    run: { type: exec, command: [node, ${server}] }
`,
    );
    const up = startUp(['-f', file, '-k', KEY, '--no-color']);
    const curl = async (...args: string[]) => (await client.exec(['curl', '-s', '-m', '5', ...args, `http://${a.name}:${PORT}/x`])).stdout;
    try {
      await until('the local service to listen', () => up.out().includes('web | listening'));
      await until('the filter to take effect', async () => (await curl('-H', `baggage: mirrord-session=${KEY}`)) === 'from-local /x');
      assert.equal(await curl('-H', `baggage: other=1, mirrord-session=${KEY}`), 'from-local /x');
      assert.equal(await curl(), 'from-target /x');
      assert.equal(await curl('-H', `baggage: mirrord-session=${KEY}x`), 'from-target /x');
    } finally {
      process.kill(up.child.pid!, 'SIGTERM');
    }
    assert.equal(await up.done, 143, up.err());
    assert.deepEqual(await waitSessionGone(up.child.pid!), []);
    // The target answers its own clients again: no rule was left behind.
    assert.equal(await curl('-H', `baggage: mirrord-session=${KEY}`), 'from-target /x');
  });

  it('two services stealing one target with their own HTTP filters share one agent; requests go by filter', async () => {
    const serve = (who: string) =>
      `[docker, run, --rm, ${image}, sh, -c, 'mkdir -p /tmp/w && echo ${who} > /tmp/w/x && exec python3 -m http.server ${PORT} --directory /tmp/w']`;
    const file = upFile(
      'shared-steal.yaml',
      `services:
  one:
    target: docker/${a.name}
    http_filter: { header_filter: 'x-who: one' }
    run: { type: container, command: ${serve('from-one')} }
  two:
    target: docker/${a.name}
    http_filter: { header_filter: 'x-who: two' }
    run: { type: container, command: ${serve('from-two')} }
`,
    );
    const agentsOfA = async () => (await listContainers('dev.mirrord.agent=true')).filter((c) => c.Labels['dev.mirrord.target'] === a.id);
    const up = startUp(['-f', file, '-k', KEY, '--no-color']);
    const curl = async (...args: string[]) => (await client.exec(['curl', '-s', '-m', '5', ...args, `http://${a.name}:${PORT}/x`])).stdout.trim();
    try {
      await until(
        'both filters to take effect',
        async () => (await curl('-H', 'x-who: one')) === 'from-one' && (await curl('-H', 'x-who: two')) === 'from-two',
        120_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nstdout: ${up.out()}\nstderr: ${up.err()}`);
      });
      assert.equal(await curl(), 'from-target /x', 'a request matching neither filter reaches the target');
      assert.equal((await agentsOfA()).length, 1, 'one agent for both sessions');
    } finally {
      process.kill(up.child.pid!, 'SIGTERM');
    }
    assert.equal(await up.done, 143, up.err());
    assert.deepEqual(await waitSessionGone(up.child.pid!), []);
    await until('the shared agent to leave after its ttl', async () => (await agentsOfA()).length === 0, 20_000);
    assert.equal(await curl('-H', 'x-who: one'), 'from-target /x', 'no rule was left behind');
  });

  it('SIGINT to the process group and SIGTERM to up alone stop everything (130, 143); after SIGKILL nothing is left either', async () => {
    const file = upFile(
      'long.yaml',
      `services:
  sleeper:
    target: docker/${b.name}
    default_mode: mirror
    run: { type: exec, command: [sh, -c, 'echo up; exec sleep ${SLEEP}'] }
  boxed:
    target: docker/${b.name}
    default_mode: mirror
    run: { type: container, command: [docker, run, --rm, ${image}, sh, -c, 'echo up; exec sleep ${SLEEP}'] }
`,
    );
    for (const [how, expected] of [
      ['group-SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGKILL', 137],
    ] as const) {
      // A program may ignore the signal (SIGINT is ignored under a shell's background job): --timeout
      // bounds the wait before its lifeline is cut.
      const up = startUp(['-f', file, '-k', KEY, '--no-color', '--timeout', '3']);
      await until(`both services to run (${how})`, () => up.out().includes('sleeper | up') && up.out().includes('boxed   | up'), 120_000);
      if (how === 'group-SIGINT') process.kill(-up.child.pid!, 'SIGINT');
      else process.kill(up.child.pid!, how);
      assert.equal(await up.done, expected, `${how}: ${up.err()}`);
      assert.deepEqual(await waitSessionGone(up.child.pid!, 20_000), [], `${how}: containers left`);
      // The exec'd program too: mirrord-init ends it when its lifeline to up closes.
      await until(`the program of ${how} to end`, async () => (await runPs()).every((l) => !l.includes(`sleep ${SLEEP}`)), 10_000);
    }
  });

  it('mirrord up --wait returns once every service runs; mirrord up down stops them', async () => {
    const file = upFile(
      'wait.yaml',
      `services:
  bg:
    target: docker/${b.name}
    default_mode: mirror
    run: { type: container, command: [docker, run, --rm, ${image}, sh, -c, 'exec sleep 300'] }
`,
    );
    const r = await runCli(['up', '-f', file, '-k', KEY, '--wait'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /every service is running/);
    assert.ok(
      (await leftByLabel()).some((c) => c.includes('running')),
      'nothing runs after --wait',
    );
    const down = await runCli(['up', 'down', '-k', KEY], { timeoutMs: 60_000 });
    assert.equal(down.code, 0, down.stderr);
    await until('up down to leave nothing', async () => (await leftByLabel()).length === 0, 20_000);
  });

  it('bad input: an unknown key names its line (exit 78), an unknown service lists the others (64), a missing target says so (65)', async () => {
    const bad = upFile('bad.yaml', `services:\n  one:\n    target: docker/${a.name}\n    run: { type: exec, command: ['true'] }\n    colour: blue\n`);
    const r1 = await runCli(['up', '-f', bad]);
    assert.equal(r1.code, 78, r1.stderr);
    assert.match(r1.stderr, /bad\.yaml:5: services\.one\.colour: unknown key/);
    const good = upFile('good.yaml', `services:\n  one:\n    target: docker/${a.name}\n    run: { type: exec, command: ['true'] }\n`);
    const r2 = await runCli(['up', '-f', good, 'two']);
    assert.equal(r2.code, 64, r2.stderr);
    assert.match(r2.stderr, /no service named two.*Its services: one/);
    const missing = upFile('missing.yaml', `services:\n  one:\n    target: docker/no-such-${tag}\n    run: { type: exec, command: ['true'] }\n`);
    const r3 = await runCli(['up', '-f', missing]);
    assert.equal(r3.code, 65, r3.stderr);
    assert.equal(r3.stderr.trim().split('\n').length, 1, r3.stderr);
    assert.deepEqual(await leftByLabel(os.userInfo().username), []);
  });
});

async function runPs(): Promise<string[]> {
  const { execFileSync } = await import('node:child_process');
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n');
}
