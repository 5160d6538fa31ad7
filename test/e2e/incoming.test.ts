import assert from 'node:assert/strict';
import { copyFileSync, chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { sessionContainers } from '../helpers/sessions.js';
import { killGroups, natTable as targetNat, startMirrord as startSession, stopMirrord as stop, until, type Running } from '../helpers/incoming.js';
import { CLI } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * Incoming traffic against real containers: a target serving HTTP, a local server under mirrord,
 * and a client in a third container calling the target by name.
 */
const PORT = 8080;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-incoming-'));
const LOCAL_SERVER = path.join(dir, 'local-server.js');
writeFileSync(
  LOCAL_SERVER,
  `const http = require('http');
const port = Number(process.argv[2] || ${PORT});
http.createServer((req, res) => {
  console.log('local got ' + req.method + ' ' + req.url + ' from ' + req.socket.remoteAddress);
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => res.end('from-local ' + req.url + (body ? ' ' + body : '')));
}).listen(port, () => console.log('listening ' + port));
`,
);
// The target's own app: keep-alive HTTP/1.1, answers with its own name.
const TARGET_APP = `require('http').createServer((q, s) => { let b=''; q.on('data', d => b += d); q.on('end', () => s.end('from-target ' + q.url + (b ? ' ' + b : ''))); }).listen(${PORT})`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let agentImage = '';

function startMirrord(flags: string[], cmd: string[], env: NodeJS.ProcessEnv = {}): Running {
  return startSession(target.name, flags, cmd, env);
}

async function curl(args: string[]): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', '5', ...args])).stdout;
}

const natTable = () => targetNat(target.id, agentImage);

describe('incoming traffic: mirror, steal, HTTP filter', { timeout: 600_000 }, () => {
  let baseline = '';

  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    network = await createNetwork('mirrord-incoming');
    target = await runContainer({ name: 'in-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: PORT } });
    client = await runContainer({ name: 'in-client', network: network.name, cmd: ['sleep', '100000'] });
    baseline = await natTable();
    assert.match(baseline, /DOCKER_OUTPUT/, "the nat table dump should show Docker's own DNS rules");
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it("mirror (default): the client gets the target's answer and the local server sees the request", async () => {
    const r = startMirrord([], ['node', LOCAL_SERVER]);
    try {
      await until('the local server to receive a mirrored request', async () => {
        assert.equal(await curl([`http://${target.name}:${PORT}/mirrored`]), 'from-target /mirrored');
        return r.out().includes('local got GET /mirrored');
      });
      const clientIp = await client.ip(network.name);
      assert.match(
        r.out(),
        new RegExp(`local got GET /mirrored from (::ffff:)?${clientIp.replace(/\./g, '\\.')}`),
        "the local server sees the remote client's address",
      );
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });

  it('steal: the client gets the local answer; after the session the target answers again', async () => {
    const r = startMirrord(['--steal'], ['node', LOCAL_SERVER]);
    try {
      await until('the steal to take effect', async () => (await curl([`http://${target.name}:${PORT}/x`])) === 'from-local /x');
      assert.equal(await curl(['-d', 'payload', `http://${target.name}:${PORT}/post`]), 'from-local /post payload');
    } finally {
      await stop(r, 'SIGINT');
    }
    assert.equal(await curl([`http://${target.name}:${PORT}/x`]), 'from-target /x');
    assert.equal(await natTable(), baseline, 'no rule may stay behind');
  });

  it('HTTP filter: by header, alternating on one keep-alive connection and with pipelining', async () => {
    const cfg = path.join(dir, 'filter.json');
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', http_filter: { header_filter: '^x-session: me$' } } } } }));
    const r = startMirrord(['-f', cfg], ['node', LOCAL_SERVER]);
    try {
      await until('the filter to take effect', async () => (await curl(['-H', 'x-session: me', `http://${target.name}:${PORT}/f`])) === 'from-local /f');
      assert.equal(await curl([`http://${target.name}:${PORT}/f`]), 'from-target /f');
      const script = `
import http.client, socket
c = http.client.HTTPConnection("${target.name}", ${PORT}, timeout=5)
out = []
for i in range(6):
    c.request("GET", "/k%d" % i, headers={"x-session": "me"} if i % 2 == 0 else {})
    if i == 0: first = c.sock
    out.append(c.getresponse().read().decode())
    assert c.sock is first, "the keep-alive connection was replaced"
print("|".join(out))
s = socket.create_connection(("${target.name}", ${PORT}), timeout=5)
s.sendall(b"GET /p1 HTTP/1.1\\r\\nHost: t\\r\\nx-session: me\\r\\n\\r\\nGET /p2 HTTP/1.1\\r\\nHost: t\\r\\n\\r\\nGET /p3 HTTP/1.1\\r\\nHost: t\\r\\nx-session: me\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
import re
bodies = re.findall(r"from-(?:local|target) /p\\d", data.decode())
print("|".join(bodies))
`;
      const res = await client.exec(['python3', '-c', script]);
      const [keepAlive, pipelined] = res.stdout.trim().split('\n');
      assert.equal(keepAlive, 'from-local /k0|from-target /k1|from-local /k2|from-target /k3|from-local /k4|from-target /k5', res.stderr);
      assert.equal(pipelined, 'from-local /p1|from-target /p2|from-local /p3', res.stderr);
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });

  it('HTTP filter over h2c: routed per stream on one HTTP/2 connection', async () => {
    const H2 = 8081;
    const h2server = (name: string) => `require('http2').createServer((q, s) => s.end('${name} ' + q.url)).listen(${H2})`;
    // A second app in the target, started in the background ($0 is the code).
    const app = await target.exec(['sh', '-c', 'nohup node -e "$0" >/dev/null 2>&1 &', h2server('from-target')]);
    assert.equal(app.code, 0, app.stderr);
    const local = path.join(dir, 'h2-local.js');
    writeFileSync(local, `${h2server('from-local')}; console.log('listening h2')`);
    const cfg = path.join(dir, 'h2.json');
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', http_filter: { header_filter: '^x-session: me$' } } } } }));
    const r = startMirrord(['-f', cfg], ['node', local]);
    const script = `
const s = require('http2').connect('http://${target.name}:${H2}');
const get = (p, h) => new Promise((res, rej) => { const q = s.request({ ':path': p, ...h }); let b = ''; q.setEncoding('utf8'); q.on('data', d => b += d); q.on('end', () => res(b)); q.on('error', rej); q.end(); });
Promise.all([get('/a', { 'x-session': 'me' }), get('/b', {}), get('/c', { 'x-session': 'me' })]).then((v) => { console.log(v.join('|')); s.close(); }, (e) => { console.error(e.message); process.exit(1); });`;
    try {
      await until('the h2c filter to take effect', async () => (await client.exec(['node', '-e', script])).stdout.trim().startsWith('from-local /a'));
      const res = await client.exec(['node', '-e', script]);
      assert.equal(res.stdout.trim(), 'from-local /a|from-target /b|from-local /c', res.stderr);
    } finally {
      await stop(r);
    }
    assert.equal(await natTable(), baseline);
  });

  it('a local program binds port 80 as a non-root user', async () => {
    // The layer must be readable by that user; the checkout may live under a private directory.
    const layerCopy = path.join(mkdtempSync(path.join(os.tmpdir(), 'mirrord-layer-')), 'libmirrord_layer.so');
    copyFileSync(path.join(path.dirname(CLI), '../layer/build/libmirrord_layer.so'), layerCopy);
    chmodSync(path.dirname(layerCopy), 0o755);
    chmodSync(layerCopy, 0o755);
    const serverCopy = path.join(path.dirname(layerCopy), 'server.js');
    copyFileSync(LOCAL_SERVER, serverCopy);
    chmodSync(serverCopy, 0o644);
    const r = startMirrord(['--steal'], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, serverCopy, '80'], {
      MIRRORD_LAYER_PATH: layerCopy,
    });
    try {
      await until('the local server on port 80 to answer', async () => (await curl([`http://${target.name}:80/eighty`])) === 'from-local /eighty');
      assert.match(r.out(), /listening 80/, 'the program believes it has port 80');
    } finally {
      await stop(r);
    }
  });

  it('agent killed with SIGKILL: within 2 s the target answers its own clients, nat table as before', async () => {
    const r = startMirrord(['--steal'], ['node', LOCAL_SERVER]);
    try {
      await until('the steal to take effect', async () => (await curl([`http://${target.name}:${PORT}/k`])) === 'from-local /k');
      // This session's agent only: other sessions may share the engine.
      const agent = (await sessionContainers(r.child.pid!)).find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      assert.ok(agent, 'an agent container runs');
      await docker().getContainer(agent.Id).kill({ signal: 'SIGKILL' });
      const killed = Date.now();
      await until('the target to answer again', async () => (await curl(['-m', '1', `http://${target.name}:${PORT}/k`])) === 'from-target /k', 10_000);
      const took = Date.now() - killed;
      assert.ok(took < 2000, `the target answered its clients again only after ${took} ms`);
      assert.equal(await natTable(), baseline);
    } finally {
      await stop(r);
    }
    await until('every agent and guard container to be gone', async () => (await sessionContainers(r.child.pid!)).length === 0, 10_000);
  });

  it('the CLI killed with SIGKILL: the agent removes its rules as it leaves', async () => {
    const r = startMirrord(['--steal'], ['node', LOCAL_SERVER]);
    await until('the steal to take effect', async () => (await curl([`http://${target.name}:${PORT}/c`])) === 'from-local /c');
    r.child.kill('SIGKILL');
    await r.done;
    killGroups();
    await until('the target to answer again', async () => (await curl(['-m', '1', `http://${target.name}:${PORT}/c`])) === 'from-target /c', 10_000);
    await until('every agent and guard container to be gone', async () => (await sessionContainers(r.child.pid!)).length === 0, 10_000);
    assert.equal(await natTable(), baseline);
  });

  it('two sessions one after the other on the same port: both work, no rule accumulates', async () => {
    for (const round of [1, 2]) {
      const r = startMirrord(['--steal'], ['node', LOCAL_SERVER]);
      try {
        await until(`session ${round} to steal`, async () => (await curl([`http://${target.name}:${PORT}/r${round}`])) === `from-local /r${round}`);
      } finally {
        await stop(r);
      }
      assert.equal(await natTable(), baseline, `after session ${round}`);
    }
  });

  it('mode off, ignore_ports and port_mapping', async () => {
    const cfg = path.join(dir, 'map.json');
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', port_mapping: [[9999, PORT]] } } } }));
    const mapped = startMirrord(['-f', cfg], ['node', LOCAL_SERVER, '9999']);
    try {
      await until('the mapped port to be stolen', async () => (await curl([`http://${target.name}:${PORT}/m`])) === 'from-local /m');
    } finally {
      await stop(mapped);
    }
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', ignore_ports: [PORT] } } } }));
    const ignored = startMirrord(['-f', cfg], ['node', LOCAL_SERVER]);
    try {
      await until('the local server to listen', async () => ignored.out().includes('listening'));
      await sleep(500);
      assert.equal(await curl([`http://${target.name}:${PORT}/i`]), 'from-target /i');
    } finally {
      await stop(ignored);
    }
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: 'off' } } }));
    const off = startMirrord(['-f', cfg], ['node', LOCAL_SERVER]);
    try {
      await until('the local server to listen', async () => off.out().includes('listening'));
      await sleep(500);
      assert.equal(await curl([`http://${target.name}:${PORT}/o`]), 'from-target /o');
      assert.doesNotMatch(off.out(), /local got/);
    } finally {
      await stop(off);
    }
    assert.equal(await natTable(), baseline);
  });
});
