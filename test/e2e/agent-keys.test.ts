/**
 * The agent keys of issue 17 on a Docker target, through the real CLI, agent and layer: a target
 * serving keep-alive HTTP, a client container calling it by name, a local server under
 * `mirrord exec`. agent.json_log (the CLI relays the agent's JSON lines), flush_connections (a
 * keep-alive client connected before the steal is stolen after it, and is not without the key),
 * metrics (scraped inside the target's network namespace), nftables (the rules land in the forced
 * back end), communication_timeout (a live CLI stays connected past it) and disabled_capabilities
 * (a steal without NET_ADMIN fails, naming the key). The agent-process halves are in
 * test/unit/agent-keys.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { inTargetNet, killGroups, natTable as targetNat, startMirrord as startSession, stopMirrord as stop, until, type Running } from '../helpers/incoming.js';
import { createNetwork, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

const PORT = 8080;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-agent-keys-'));
const LOCAL_SERVER = path.join(dir, 'local-server.js');
writeFileSync(
  LOCAL_SERVER,
  `require('http').createServer((q, s) => s.end('from-local ' + q.url)).listen(${PORT}, () => console.log('listening'));
setInterval(() => {}, 1000);
`,
);
const TARGET_APP = `require('http').createServer((q, s) => s.end('from-target ' + q.url)).listen(${PORT})`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let agentImage = '';
let tools = '';

function config(name: string, agent: Record<string, unknown>, feature: Record<string, unknown> = {}): string {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ agent, feature }));
  return file;
}

function startMirrord(flags: string[], cmd: string[], env: NodeJS.ProcessEnv = {}): Running {
  return startSession(target.name, flags, cmd, env);
}

async function curl(url: string): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', '5', url])).stdout;
}

const url = (p: string) => `http://${target.name}:${PORT}${p}`;

/**
 * A keep-alive client in the client container: one HTTP/1.1 connection, a request every 200 ms,
 * a new connection only after an error; prints `time conn body` a line until /tmp/stop-NAME exists.
 */
function keepAliveLoop(name: string): Promise<string> {
  const script = `
import http.client, os, time
conn, n = None, 0
while not os.path.exists("/tmp/stop-${name}"):
    try:
        if conn is None:
            conn = http.client.HTTPConnection("${target.name}", ${PORT}, timeout=3)
            n += 1
        conn.request("GET", "/ka")
        body = conn.getresponse().read().decode()
        print("%.3f %d %s" % (time.time(), n, body), flush=True)
    except Exception as e:
        print("%.3f %d error %s" % (time.time(), n, type(e).__name__), flush=True)
        conn = None
    time.sleep(0.2)
`;
  return client.exec(['python3', '-c', script]).then((r) => r.stdout);
}

interface Reply {
  t: number;
  conn: number;
  body: string;
}
const replies = (out: string): Reply[] =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [t, conn, ...rest] = l.split(' ');
      return { t: Number(t) * 1000, conn: Number(conn), body: rest.join(' ') };
    });

describe('agent keys on a Docker target', { timeout: 600_000 }, () => {
  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    tools = await toolsImage();
    network = await createNetwork('mirrord-agent-keys');
    target = await runContainer({ name: 'ak-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: PORT } });
    client = await runContainer({ name: 'ak-client', network: network.name, cmd: ['sleep', '100000'] });
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it("agent.json_log: the agent logs JSON lines, which the CLI shows with the agent's timestamps", async () => {
    const prog = ['node', '-e', 'console.log("done")'];
    const plain = startMirrord(['-f', config('plain', { log_level: 'info' })], prog, { MIRRORD_LOG: 'debug' });
    assert.equal(await plain.done, 0, plain.out());
    const json = startMirrord(['-f', config('json', { json_log: true, log_level: 'info' })], prog, { MIRRORD_LOG: 'debug' });
    assert.equal(await json.done, 0, json.out());
    // Plain lines come as the agent wrote them; JSON ones decoded, led by the agent's own timestamp.
    const agentLine = /agent: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[mirrord-agent\] info: client .* connected/;
    assert.match(json.out(), agentLine);
    assert.doesNotMatch(plain.out(), agentLine);
    assert.match(plain.out(), /agent: \[mirrord-agent\] info: client .* connected/);
    assert.doesNotMatch(json.out(), /"fields":/, 'no raw JSON reaches the terminal');
  });

  it('agent.flush_connections (default true): a keep-alive connection made before the steal is stolen after it', async () => {
    const loop = keepAliveLoop('flush');
    await sleep(1500);
    const r = startMirrord(['--steal'], ['node', LOCAL_SERVER]);
    let stolenAt = 0;
    try {
      await until('the steal to take effect', async () => (await curl(url('/new'))) === 'from-local /new');
      stolenAt = Date.now();
      await sleep(3000);
    } finally {
      await client.exec(['touch', '/tmp/stop-flush']);
    }
    const out = await loop;
    await stop(r);
    const rs = replies(out);
    assert.ok(
      rs.some((x) => x.conn === 1 && x.body === 'from-target /ka'),
      `the first connection reached the target:\n${out}`,
    );
    const late = rs.filter((x) => x.t > stolenAt + 1000);
    assert.ok(late.length > 5, out);
    assert.ok(
      late.every((x) => x.body === 'from-local /ka'),
      `a second after the steal every answer is the local one:\n${out}`,
    );
    assert.ok(
      late.every((x) => x.conn > 1),
      'on a new connection: the old one was flushed',
    );
  });

  it('agent.flush_connections: false leaves the established connection with the target', async () => {
    const loop = keepAliveLoop('noflush');
    await sleep(1500);
    const r = startMirrord(['--steal', '-f', config('noflush', { flush_connections: false })], ['node', LOCAL_SERVER]);
    let stolenAt = 0;
    try {
      await until('the steal to take effect', async () => (await curl(url('/new'))) === 'from-local /new');
      stolenAt = Date.now();
      await sleep(3000);
    } finally {
      await client.exec(['touch', '/tmp/stop-noflush']);
    }
    const out = await loop;
    await stop(r);
    const late = replies(out).filter((x) => x.t > stolenAt + 1000);
    assert.ok(late.length > 5, out);
    assert.ok(
      late.every((x) => x.conn === 1 && x.body === 'from-target /ka'),
      `the connection made before the steal still reaches the target:\n${out}`,
    );
  });

  it('agent.metrics: Prometheus metrics in the target network namespace', async () => {
    const prog = `
const dns = require('dns'), http = require('http');
dns.lookup('${client.name}', (err, addr) => {
  if (err) throw err;
  http.get('http://${target.name}:${PORT}/m', (res) => { res.resume(); res.on('end', () => console.log('ready ' + addr)); });
});
setTimeout(() => {}, 60000);
`;
    const cfg = config('metrics', { metrics: '0.0.0.0:9464', fd_passing: 'off' }, { network: { incoming: 'steal' } });
    const r = startMirrord(['-f', cfg], ['node', '-e', prog]);
    try {
      await until('the program to resolve and connect', async () => r.out().includes('ready '));
      const scrape = await inTargetNet(target.id, tools, ['curl', '-s', '-m', '5', 'http://127.0.0.1:9464/metrics']);
      assert.equal(scrape.code, 0, scrape.output);
      const m = scrape.stdout;
      const value = (re: RegExp) => Number(re.exec(m)?.[1]);
      assert.equal(value(/^mirrord_agent_sessions (\d+)/m), 1, m);
      assert.ok(value(/^mirrord_agent_dns_queries_total\{result="ok"\} (\d+)/m) >= 1, m);
      assert.ok(value(/^mirrord_agent_connections_total\{direction="outgoing"\} (\d+)/m) >= 1, m);
      assert.ok(value(/^mirrord_agent_bytes_total\{direction="to_client"\} (\d+)/m) > 0, m);
      assert.match(m, /^mirrord_agent_port_subscriptions\{mode="steal"\} 0/m, 'the program listens on nothing');
      assert.match(m, /^mirrord_agent_process_resident_memory_bytes \d+/m);
    } finally {
      await stop(r);
    }
    const gone = await inTargetNet(target.id, tools, ['curl', '-s', '-m', '3', 'http://127.0.0.1:9464/metrics']);
    assert.notEqual(gone.code, 0, 'the endpoint goes with the agent');
  });

  it('agent.metrics: a stolen connection and the steal subscription are counted', async () => {
    const r = startMirrord(['--steal', '-f', config('metrics-steal', { metrics: '127.0.0.1:9465' })], ['node', LOCAL_SERVER]);
    try {
      await until('the steal to take effect', async () => (await curl(url('/s'))) === 'from-local /s');
      const m = (await inTargetNet(target.id, tools, ['curl', '-s', '-m', '5', 'http://127.0.0.1:9465/metrics'])).stdout;
      assert.match(m, /^mirrord_agent_port_subscriptions\{mode="steal"\} 1/m, m);
      assert.ok(Number(/^mirrord_agent_connections_total\{direction="incoming"\} (\d+)/m.exec(m)?.[1]) >= 1, m);
    } finally {
      await stop(r);
    }
  });

  for (const nftables of [true, false]) {
    it(`agent.nftables: ${nftables}: the steal rules are in iptables-${nftables ? 'nft' : 'legacy'} only`, async () => {
      const r = startMirrord(['--steal', '-f', config(`nft-${nftables}`, { nftables })], ['node', LOCAL_SERVER]);
      try {
        await until('the steal to take effect', async () => (await curl(url('/n'))) === 'from-local /n');
        const [nft, legacy] = (await targetNat(target.id, agentImage)).split('\n--\n');
        const [used, other] = nftables ? [nft!, legacy!] : [legacy!, nft!];
        assert.match(used, /^:MIRRORD_\w+ /m, `the chain is in the ${nftables ? 'nft' : 'legacy'} tables`);
        assert.doesNotMatch(other, /MIRRORD_/, 'and not in the other');
      } finally {
        await stop(r);
      }
      assert.doesNotMatch(await targetNat(target.id, agentImage), /MIRRORD_/, 'the guard and the agent remove them from the forced back end');
    });
  }

  it('agent.communication_timeout: a live CLI is kept past it (the agent pings, the CLI answers)', async () => {
    const prog = `
const dns = require('dns');
const ask = (tag) => dns.lookup('${client.name}', (err, a) => console.log(tag + ' ' + (err ? err.code : a)));
ask('first');
setTimeout(() => ask('later'), 4000);
`;
    const r = startMirrord(['-f', config('ct', { communication_timeout: 1 })], ['node', '-e', prog]);
    assert.equal(await r.done, 0, r.out());
    const ip = await client.ip(network.name);
    assert.match(r.out(), new RegExp(`first ${ip.replace(/\./g, '\\.')}`));
    assert.match(r.out(), new RegExp(`later ${ip.replace(/\./g, '\\.')}`), 'the agent still answers 4 s in');
  });

  it('agent.disabled_capabilities: without NET_ADMIN the steal fails, naming the key', async () => {
    const r = startMirrord(['--steal', '-f', config('nocap', { disabled_capabilities: ['CAP_NET_ADMIN'] })], ['node', LOCAL_SERVER]);
    await until('the failure', async () => /disabled_capabilities drops NET_ADMIN/.test(r.out()) || r.child.exitCode !== null, 60_000);
    await stop(r);
    assert.match(r.out(), /cannot redirect port 8080 .*agent\.disabled_capabilities drops NET_ADMIN, which this needs/, r.out());
    assert.equal(await curl(url('/after')), 'from-target /after');
  });

  it("agent.disabled_capabilities: without SYS_PTRACE the target's environment cannot be read: one line, exit 75", async () => {
    const r = startMirrord(['-f', config('noptrace', { disabled_capabilities: ['sys_ptrace'] })], ['sh', '-c', 'echo ran']);
    assert.equal(await r.done, 75, r.out());
    assert.equal(r.out().trim(), "mirrord: cannot read the target's environment: agent.disabled_capabilities drops SYS_PTRACE, which this needs");
  });
});
