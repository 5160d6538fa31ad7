import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { sessionContainers } from '../helpers/sessions.js';
import { killGroups, natTable as targetNat, startMirrord as startSession, stopMirrord as stop, until, type Running } from '../helpers/incoming.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * Passive mirror against real containers: the agent copies what it captures of the port's packets
 * and redirects nothing. The target's app answers with the address it sees its client at; a client
 * container calls it by name; the local server under `mirrord exec` logs each copy it receives.
 */
const PORT = 8080;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-mirror-'));
const LOCAL_SERVER = path.join(dir, 'local-server.js');
writeFileSync(
  LOCAL_SERVER,
  `require('http').createServer((req, res) => {
  let n = 0;
  req.on('data', (d) => (n += d.length));
  req.on('end', () => { console.log('local got ' + req.method + ' ' + req.url + ' ' + n); res.end('ignored'); });
}).listen(${PORT}, () => console.log('listening'));
`,
);
// The target's app: keep-alive HTTP/1.1, tells the client whom it saw, and logs it.
const TARGET_APP = `require('http').createServer((q, s) => { let n = 0; q.on('data', d => n += d.length); q.on('end', () => { const peer = q.socket.remoteAddress.replace(/^::ffff:/, ''); console.log('target got ' + q.url + ' from ' + peer); s.end('from-target ' + q.url + ' ' + n + ' peer=' + peer); }); }).listen(${PORT})`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let clientIp = '';
let agentImage = '';
let baseline = '';

const natTable = () => targetNat(target.id, agentImage);
const curl = async (args: string[]) => (await client.exec(['curl', '-s', '-m', '5', ...args])).stdout;
const seen = (r: Running, what: RegExp) =>
  r
    .out()
    .split('\n')
    .filter((l) => what.test(l)).length;

/** A mirroring session, once a probe request has reached its local server. */
async function mirroring(flags: string[] = [], probeHeaders: string[] = []): Promise<Running> {
  const r = startSession(target.name, flags, ['node', LOCAL_SERVER]);
  await until('the mirror to take effect', async () => {
    assert.match(await curl([...probeHeaders, `http://${target.name}:${PORT}/probe`]), /^from-target \/probe/);
    return r.out().includes('local got GET /probe');
  });
  return r;
}

describe('passive mirror: a copy of the traffic, the target untouched', { timeout: 600_000 }, () => {
  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    network = await createNetwork('mirrord-mirror');
    target = await runContainer({ name: 'mirror-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: PORT } });
    client = await runContainer({ name: 'mirror-client', network: network.name, cmd: ['sleep', '100000'] });
    clientIp = await client.ip(network.name);
    baseline = await natTable();
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it("the target sees its client's real address, no rule is added, every request is copied once", async () => {
    const r = await mirroring();
    try {
      assert.equal(await natTable(), baseline, 'mirroring adds no nat rule');
      // The capture yields the CPU to the target: its helper runs under SCHED_IDLE ("IDL").
      const agent = (await sessionContainers(r.child.pid!)).find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      assert.ok(agent, 'an agent container runs');
      const top = await docker().getContainer(agent.Id).top({ ps_args: '-o pid,cls,comm' });
      const sniff = top.Processes.filter((p: string[]) => /mirrord-sniff/.test(p.join(' ')));
      assert.deepEqual(
        sniff.map((p: string[]) => p[1]),
        ['IDL'],
        `one capture helper, at idle priority: ${JSON.stringify(top.Processes)}`,
      );
      assert.equal(await curl([`http://${target.name}:${PORT}/who`]), `from-target /who 0 peer=${clientIp}`, "the target's app sees the client container");
      // 10 connections of their own, then 20 requests on one keep-alive connection, some with a
      // 256 KiB body (many segments, reassembled), one pipelined burst.
      for (let i = 0; i < 10; i++) assert.match(await curl([`http://${target.name}:${PORT}/c${i}`]), /^from-target /);
      const script = `
import http.client, socket
c = http.client.HTTPConnection("${target.name}", ${PORT}, timeout=10)
out = []
for i in range(20):
    body = b"x" * (262144 if i % 5 == 0 else i)
    c.request("POST", "/k%d" % i, body=body)
    out.append(c.getresponse().read().decode().split(" ")[2])
s = socket.create_connection(("${target.name}", ${PORT}), timeout=10)
s.sendall(b"".join(b"GET /p%d HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n" % i for i in range(5)) + b"GET /p5 HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
out.append(str(data.count(b"from-target /p")))
print(",".join(out))
`;
      const res = await client.exec(['python3', '-c', script]);
      assert.equal(res.code, 0, res.stderr);
      const sizes = Array.from({ length: 20 }, (_, i) => String(i % 5 === 0 ? 262144 : i));
      assert.equal(res.stdout.trim(), [...sizes, '6'].join(','), 'the target answered every request itself');
      const expected = [
        ...Array.from({ length: 10 }, (_, i) => `GET /c${i} 0`),
        ...sizes.map((n, i) => `POST /k${i} ${n}`),
        ...Array.from({ length: 6 }, (_, i) => `GET /p${i} 0`),
      ];
      await until(`every request to reach the local server (it saw ${seen(r, /^local got /)} of ${expected.length + 1})`, async () =>
        expected.every((e) => r.out().includes(`local got ${e}\n`)),
      );
      for (const e of expected) assert.equal(seen(r, new RegExp(`^local got ${e}$`)), 1, `${e} is copied exactly once`);
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });

  it('the agent SIGKILLed mid-request: the client connection is not reset, the target answers it', async () => {
    const r = await mirroring();
    // Half a request, then (once the agent is dead) the rest and a second request on the same connection.
    const script = `
import os, socket, time
s = socket.create_connection(("${target.name}", ${PORT}), timeout=10)
s.sendall(b"POST /half HTTP/1.1\\r\\nHost: t\\r\\nContent-Length: 10\\r\\n\\r\\nhello")
open("/tmp/half-sent", "w").close()
while not os.path.exists("/tmp/agent-dead"): time.sleep(0.05)
s.sendall(b"world")
def answer():
    data = b""
    while b"peer=" not in data or not data.endswith(b"${clientIp}"):
        d = s.recv(65536)
        if not d: raise SystemExit("closed by the target: " + repr(data))
        data += d
    return data.split(b"\\r\\n\\r\\n", 1)[1].decode()
print(answer())
s.sendall(b"GET /after HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
print(answer())
`;
    try {
      await client.exec(['rm', '-f', '/tmp/half-sent', '/tmp/agent-dead']);
      const running = client.exec(['python3', '-c', script]);
      await until('the client to send half a request', async () => (await client.exec(['test', '-e', '/tmp/half-sent'])).code === 0);
      const agent = (await sessionContainers(r.child.pid!)).find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      assert.ok(agent, 'an agent container runs');
      await docker().getContainer(agent.Id).kill({ signal: 'SIGKILL' });
      await client.exec(['touch', '/tmp/agent-dead']);
      const res = await running;
      assert.equal(res.code, 0, `the client's connection survived the agent: ${res.stderr}`);
      assert.deepEqual(res.stdout.trim().split('\n'), [`from-target /half 10 peer=${clientIp}`, `from-target /after 0 peer=${clientIp}`]);
      assert.match(await curl([`http://${target.name}:${PORT}/later`]), /^from-target \/later/);
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });

  it('an HTTP filter applies to mirroring (header or JSON body; HTTP/1.1 and h2c): only matching requests are copied', async () => {
    const H2 = 8081;
    // An h2c app beside the target's HTTP/1.1 one, and a local program serving both ports.
    const h2app = `require('http2').createServer((q, s) => { q.resume(); q.on('end', () => s.end('from-target ' + q.url)); }).listen(${H2})`;
    const app = await target.exec(['sh', '-c', 'nohup node -e "$0" >/dev/null 2>&1 &', h2app]);
    assert.equal(app.code, 0, app.stderr);
    const local = path.join(dir, 'filter-local.js');
    writeFileSync(
      local,
      `const log = (q) => { let n = 0; q.on('data', (d) => (n += d.length)); q.on('end', () => console.log('local got ' + q.method + ' ' + q.url + ' ' + n)); };
require('http').createServer((q, s) => { log(q); q.on('end', () => s.end('ignored')); }).listen(${PORT});
require('http2').createServer((q, s) => { log(q); q.on('end', () => s.end('ignored')); }).listen(${H2}, () => console.log('listening'));`,
    );
    const cfg = path.join(dir, 'filter.json');
    const filter = { any_of: [{ header: '^x-mirror: yes$' }, { body: 'json', query: '$.mirror', matches: '^yes$' }] };
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'mirror', http_filter: filter } } } }));
    const r = startSession(target.name, ['-f', cfg], ['node', local]);
    try {
      await until('the mirror to take effect', async () => {
        assert.match(await curl(['-H', 'x-mirror: yes', `http://${target.name}:${PORT}/probe`]), /^from-target \/probe/);
        return r.out().includes('local got GET /probe');
      });
      // Even requests match (by header, or by body for POSTs), odd ones do not; the last one matches.
      const script = `
import http.client, json
c = http.client.HTTPConnection("${target.name}", ${PORT}, timeout=10)
out = []
for i in range(7):
    if i % 4 == 2: c.request("POST", "/f%d" % i, body=json.dumps({"mirror": "yes"}))
    elif i % 4 == 3: c.request("POST", "/f%d" % i, body=json.dumps({"mirror": "no"}))
    else: c.request("GET", "/f%d" % i, headers={"x-mirror": "yes"} if i % 2 == 0 else {})
    out.append(c.getresponse().read().decode().split(" ")[1])
print(",".join(out))
`;
      const res = await client.exec(['python3', '-c', script]);
      assert.equal(res.stdout.trim(), '/f0,/f1,/f2,/f3,/f4,/f5,/f6', `the target answered all of them: ${res.stderr}`);
      await until('the matching requests to be copied', async () =>
        ['GET /f0 0', 'POST /f2 17', 'GET /f4 0', 'POST /f6 17'].every((p) => r.out().includes(`local got ${p}`)),
      ).catch((err: Error) => assert.fail(`${err.message}; the local program saw:\n${r.out()}`));
      // Copies of one connection arrive in order: had /f5 been copied, it would be there before /f6.
      assert.equal(seen(r, /^local got \w+ \/f[135] /), 0, `unmatched requests are not copied:\n${r.out()}`);

      // h2c: the streams of one connection, one matching by header, one by body, one not at all.
      const h2 = `
const s = require('http2').connect('http://${target.name}:${H2}');
const one = (p, h, b) => new Promise((res, rej) => { const q = s.request({ ':path': p, ...h }); let o = ''; q.setEncoding('utf8'); q.on('data', (d) => (o += d)); q.on('end', () => res(o)); q.on('error', rej); q.end(b); });
(async () => { const out = [await one('/h0', { 'x-mirror': 'yes' }), await one('/h1', {}), await one('/h2', { ':method': 'POST' }, JSON.stringify({ mirror: 'yes' })), await one('/h3', { 'x-mirror': 'yes' })]; console.log(out.join('|')); s.close(); })().catch((e) => { console.error(e.message); process.exit(1); });`;
      const two = await client.exec(['node', '-e', h2]);
      assert.equal(two.stdout.trim(), 'from-target /h0|from-target /h1|from-target /h2|from-target /h3', two.stderr);
      await until('the matching h2c streams to be copied', async () =>
        ['GET /h0 0', 'POST /h2 16', 'GET /h3 0'].every((p) => r.out().includes(`local got ${p}`)),
      ).catch((err: Error) => assert.fail(`${err.message}; the local program saw:\n${r.out()}`));
      assert.equal(seen(r, /^local got \w+ \/h1 /), 0, `an unmatched stream is not copied:\n${r.out()}`);
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });
});
