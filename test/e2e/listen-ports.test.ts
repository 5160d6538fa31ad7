/**
 * feature.network.incoming.listen_ports (issue 17, item 3): a program binding port 80 with
 * [[80, 18080]] really listens on local port 18080 (ss shows it, a local client reaches it there,
 * nothing listens on 80), getsockname still reports 80, and the target's port 80 is what is
 * stolen: a client container calling the target on 80 gets the local program's answer. If 18080 is
 * taken, the program's bind fails with EADDRINUSE, as in mirrord. Real CLI, layer, agent, Docker.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { killGroups, startMirrord, stopMirrord, until } from '../helpers/incoming.js';
import { runCli } from '../helpers/cli.js';
import { createNetwork, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-listen-ports-'));
const USED = 18080;
// The local program: an HTTP server on port 80 that says who it is and what getsockname told it.
const SERVER = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("from-local " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
try:
    srv = http.server.HTTPServer(("0.0.0.0", 80), H)
except OSError as e:
    print("bind errno", e.errno, flush=True)
    sys.exit(3)
print("listening on", srv.socket.getsockname()[1], flush=True)
srv.serve_forever()
`;
const TARGET_APP = `require('http').createServer((q, s) => s.end('from-target ' + q.url)).listen(80)`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;

function config(obj: unknown): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

const localListeners = (port: number) =>
  execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim());

async function localGet(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('connect', () => s.write(`GET /here HTTP/1.0\r\nHost: x\r\n\r\n`));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('end', () => resolve(out.split('\r\n\r\n')[1] ?? ''));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
  });
}

describe('feature.network.incoming.listen_ports', { timeout: 600_000 }, () => {
  before(async () => {
    network = await createNetwork('mirrord-listen-ports');
    target = await runContainer({ name: 'lp-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: 80 } });
    client = await runContainer({ name: 'lp-client', network: network.name, cmd: ['sleep', '100000'] });
    assert.deepEqual(localListeners(80), [], 'this test needs local port 80 free');
    assert.deepEqual(localListeners(USED), [], `this test needs local port ${USED} free`);
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('binding 80 with [[80, 18080]]: listens on 18080, reports 80, and receives the target port 80 traffic', async () => {
    const cfg = config({ feature: { network: { incoming: { mode: 'steal', listen_ports: [[80, USED]] } } } });
    const r = startMirrord(target.name, ['-f', cfg], ['/usr/bin/python3', '-c', SERVER]);
    try {
      await until('the local server to listen', async () => r.out().includes('listening on'));
      assert.match(r.out(), /listening on 80\n/, 'getsockname reports the port the program asked for');
      assert.equal(localListeners(USED).length, 1, `ss shows a listener on ${USED}`);
      assert.deepEqual(localListeners(80), [], 'nothing listens on local port 80');
      assert.equal(await localGet(USED), 'from-local /here');
      assert.equal(await localGet(80), 'error ECONNREFUSED');
      await until(
        "the target's port 80 to be stolen",
        async () => (await client.exec(['curl', '-s', '-m', '5', `http://${target.name}:80/stolen`])).stdout === 'from-local /stolen',
      );
    } finally {
      await stopMirrord(r);
    }
    assert.equal((await client.exec(['curl', '-s', '-m', '5', `http://${target.name}:80/after`])).stdout, 'from-target /after');
  });

  it('the mapped port in use locally: bind fails with EADDRINUSE', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(USED, '0.0.0.0', () => resolve()));
    try {
      const cfg = config({ feature: { network: { incoming: { mode: 'steal', listen_ports: [[80, USED]] } } } });
      const r = await runCli(['exec', '-t', `docker/${target.name}`, '-f', cfg, '--', '/usr/bin/python3', '-c', SERVER], { timeoutMs: 120_000 });
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout.trim(), 'bind errno 98');
    } finally {
      blocker.close();
    }
  });
});
