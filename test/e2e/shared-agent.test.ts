import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { runCli } from '../helpers/cli.js';
import { createNetwork, docker, listContainers, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';
import { killGroups, natTable, startMirrord, stopMirrord, until, type Running } from '../helpers/incoming.js';

/**
 * One agent, many sessions on a real Docker target (agent.shared): two `mirrord exec` sessions
 * steal port 8080 with different HTTP filters through one shared agent, and a client container
 * calls the target by name.
 */
const PORT = 8080;
const H2 = 8081;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-shared-'));
const LOCAL = path.join(dir, 'local.js');
// argv: name, HTTP/1.1 port, h2c port (both local; port_mapping maps them to the target's).
writeFileSync(
  LOCAL,
  `const [name, p1, p2] = process.argv.slice(2);
require('http').createServer((q, s) => s.end('from-' + name + ' ' + q.url)).listen(Number(p1), () => console.log('listening ' + p1));
require('http2').createServer((q, s) => s.end('from-' + name + ' ' + q.url)).listen(Number(p2), () => console.log('listening ' + p2));`,
);
const TARGET_APP = `require('http').createServer((q, s) => s.end('from-target ' + q.url)).listen(${PORT});
require('http2').createServer((q, s) => s.end('from-target ' + q.url)).listen(${H2})`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let agentImage = '';
let baseline = '';

function config(name: string, incoming: Record<string, unknown>, local: [number, number]): string {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      key: `dev-${name}`,
      agent: { shared: true, ttl: 2 },
      feature: {
        network: {
          incoming: {
            mode: 'steal',
            port_mapping: [
              [local[0], PORT],
              [local[1], H2],
            ],
            ...incoming,
          },
        },
      },
    }),
  );
  return file;
}

/** A session stealing with `x-session: NAME` (or whatever `incoming` says), its local server on ports `local`. */
function session(
  name: string,
  local: [number, number],
  incoming: Record<string, unknown> = { http_filter: { header_filter: `^x-session: ${name}$` } },
): Running {
  return startMirrord(target.name, ['-f', config(name, incoming, local)], ['node', LOCAL, name, String(local[0]), String(local[1])]);
}

async function curl(who: string, url = `/x`, seconds = 5): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', String(seconds), ...(who ? ['-H', `x-session: ${who}`] : []), `http://${target.name}:${PORT}${url}`])).stdout;
}

function sharedAgents() {
  return listContainers(`dev.mirrord.target=${target.id}`).then((l) =>
    l.filter((c) => c.Labels['dev.mirrord.shared'] && c.Labels['dev.mirrord.agent'] === 'true'),
  );
}

describe('one agent, many sessions (agent.shared)', { timeout: 300_000 }, () => {
  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    network = await createNetwork('mirrord-shared');
    target = await runContainer({ name: 'shared-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: PORT } });
    client = await runContainer({ name: 'shared-client', network: network.name, cmd: ['sleep', '100000'] });
    baseline = await natTable(target.id, agentImage);
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it('two sessions steal one port with filters a and b: per request, keep-alive and h2c, one agent; a ends or is killed, b goes on', async () => {
    let a = session('a', [9101, 9102]);
    const b = session('b', [9201, 9202]);
    try {
      await until('both sessions to steal', async () => (await curl('a')) === 'from-a /x' && (await curl('b')) === 'from-b /x');
      assert.equal(await curl(''), 'from-target /x', 'requests without the header reach the target');
      assert.equal((await sharedAgents()).length, 1, 'one agent container only');

      // mirrord status: who steals what, with which filter.
      const st = await runCli(['status', '-t', `docker/${target.name}`, '--output', 'json'], { timeoutMs: 30_000 });
      assert.equal(st.code, 0, st.stderr);
      const agents = JSON.parse(st.stdout) as Array<{
        shared: boolean;
        sessions: Array<{ client: string; subscriptions: Array<{ port: number; mode: string; filter?: string }> }>;
      }>;
      assert.equal(agents.length, 1, st.stdout);
      assert.ok(agents[0]!.shared);
      const filters = agents[0]!.sessions.flatMap((x) => x.subscriptions.filter((p) => p.port === PORT).map((p) => `${p.mode} ${p.filter}`)).sort();
      assert.deepEqual(filters, ['steal header ^x-session: a$', 'steal header ^x-session: b$'], st.stdout);
      assert.ok(
        agents[0]!.sessions.every((x) => x.client.includes(`pid `)),
        'each session names its CLI',
      );
      assert.deepEqual(agents[0]!.sessions.map((x) => /\bkey (\S+)$/.exec(x.client)?.[1]).sort(), ['dev-a', 'dev-b'], 'and its session key');
      const text = await runCli(['status'], { timeoutMs: 30_000 });
      assert.match(text.stdout, new RegExp(`docker/${target.name}: shared agent \\w+, 2 session\\(s\\)`), text.stdout);
      // mirrord ls: the same sessions under their target; piped without --sessions, targets only.
      const ls = await runCli(['ls', '--no-kube', '--sessions'], { timeoutMs: 30_000 });
      assert.equal(ls.code, 0, ls.stderr);
      const under = ls.stdout.split(`docker/${target.name}\n`)[1]?.split(/\n(?! )/)[0] ?? '';
      assert.match(under, /^ {2}shared agent \w+:\n/, ls.stdout);
      for (const who of ['a', 'b'])
        assert.match(
          under,
          new RegExp(`\\n {4}session \\w+ mirrord/\\S+ .*pid \\d+ key dev-${who} since \\S+: steal ${PORT} \\(header \\^x-session: ${who}\\$\\)`),
          ls.stdout,
        );
      const plain = await runCli(['ls', '--no-kube'], { timeoutMs: 30_000 });
      assert.ok(plain.stdout.split('\n').includes(`docker/${target.name}`), plain.stdout);
      assert.ok(!plain.stdout.includes('session '), 'piped, ls prints targets only');

      const keepAlive = `
import http.client
c = http.client.HTTPConnection("${target.name}", ${PORT}, timeout=5)
out = []
for i, who in enumerate(["a", "b", "", "b", "a", ""]):
    c.request("GET", "/k%d" % i, headers={"x-session": who} if who else {})
    if i == 0: first = c.sock
    out.append(c.getresponse().read().decode())
    assert c.sock is first, "the keep-alive connection was replaced"
print("|".join(out))`;
      const ka = await client.exec(['python3', '-c', keepAlive]);
      assert.equal(ka.stdout.trim(), 'from-a /k0|from-b /k1|from-target /k2|from-b /k3|from-a /k4|from-target /k5', ka.stderr);

      const h2 = `
const s = require('http2').connect('http://${target.name}:${H2}');
const get = (p, h) => new Promise((res, rej) => { const q = s.request({ ':path': p, ...h }); let b = ''; q.setEncoding('utf8'); q.on('data', d => b += d); q.on('end', () => res(b)); q.on('error', rej); q.end(); });
Promise.all([get('/h0', { 'x-session': 'a' }), get('/h1', { 'x-session': 'b' }), get('/h2', {})]).then((v) => { console.log(v.join('|')); s.close(); }, (e) => { console.error(e.message); process.exit(1); });`;
      const h2r = await client.exec(['node', '-e', h2]);
      assert.equal(h2r.stdout.trim(), 'from-a /h0|from-b /h1|from-target /h2', h2r.stderr);

      // a ends: b keeps working, a's requests reach the target.
      await stopMirrord(a);
      await until("a's requests to reach the target", async () => (await curl('a', '/x', 1)) === 'from-target /x', 2000);
      assert.equal(await curl('b'), 'from-b /x');

      // a again, then killed with SIGKILL (its program too): the same.
      a = session('a', [9101, 9102]);
      await until('a to steal again', async () => (await curl('a')) === 'from-a /x');
      assert.equal((await sharedAgents()).length, 1, 'the second a joined the same agent');
      a.child.kill('SIGKILL');
      await a.done;
      killGroupOf(a);
      await until("a's requests to reach the target after its SIGKILL", async () => (await curl('a', '/x', 1)) === 'from-target /x', 2000);
      assert.equal(await curl('b'), 'from-b /x');
    } finally {
      await stopMirrord(b);
      if (a.child.exitCode === null) await stopMirrord(a);
    }
    await until('the shared agent to leave after its ttl', async () => (await sharedAgents()).length === 0, 10_000);
    assert.equal(await natTable(target.id, agentImage), baseline, 'the nat table is what it was');
  });

  it('an unfiltered steal beside a filtered one: abort refuses naming the other session, override takes the port', async () => {
    const a = session('a', [9301, 9302]);
    let c: Running | undefined;
    let o: Running | undefined;
    try {
      await until('a to steal', async () => (await curl('a')) === 'from-a /x');
      c = session('c', [9401, 9402], {});
      await until('c to be refused', async () => /cannot steal port 8080 of the target: .*already stolen by session \w+.*x-session: a/.test(c!.out()), 30_000);
      assert.equal(await curl(''), 'from-target /x', 'c took nothing');
      await stopMirrord(c);
      o = session('o', [9501, 9502], { on_concurrent_steal: 'override' });
      await until('o to take the port', async () => (await curl('a')) === 'from-o /x' && (await curl('')) === 'from-o /x');
      await stopMirrord(o);
      await until('a to get the port back', async () => (await curl('a')) === 'from-a /x');
      assert.equal(await curl(''), 'from-target /x');
    } finally {
      for (const r of [a, c, o]) if (r && r.child.exitCode === null) await stopMirrord(r);
    }
    await until('the shared agent to leave after its ttl', async () => (await sharedAgents()).length === 0, 10_000);
    assert.equal(await natTable(target.id, agentImage), baseline);
  });

  it('sessions one right after the other with agent.ttl 0: each joins or replaces a leaving agent', async () => {
    const cfg = path.join(dir, 'ttl0.json');
    writeFileSync(cfg, JSON.stringify({ agent: { shared: true, ttl: 0 }, feature: { network: { incoming: 'off' } } }));
    for (let i = 0; i < 4; i++) {
      const r = await runCli(['exec', '-t', `docker/${target.name}`, '-f', cfg, '--', 'sh', '-c', `echo round ${i}`], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `round ${i}`);
    }
    await until('the shared agent to leave', async () => (await sharedAgents()).length === 0, 10_000);
  });
});

/** The program a SIGKILLed CLI left behind. */
function killGroupOf(r: Running): void {
  try {
    if (r.child.pid) process.kill(-r.child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
