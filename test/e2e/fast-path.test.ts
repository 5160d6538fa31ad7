/**
 * Both data paths end to end (docs/fast-path.md): the real CLI, layer, agent and socket helper
 * against real containers. A neighbour answers every TCP connection and UDP datagram with the
 * address it came from, which must be the target's on either path; the layer's debug log says which
 * path carried it (`socket made in the target`, or `handled via port` for the stream).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';
import { killGroups, startMirrord, stopMirrord, until } from '../helpers/incoming.js';

const SERVER = `
import socket, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9000)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 9001))
    while True:
        d, a = u.recvfrom(2048); u.sendto(a[0].encode() + b' ' + d, a)
threading.Thread(target=udp, daemon=True).start()
tcp()
`;
// TCP, a connected UDP socket, an unconnected one: each prints what the neighbour saw.
const CLIENT = `
import socket, sys
host = sys.argv[1]
s = socket.create_connection((host, 9000), timeout=10); print('tcp', s.makefile().readline().strip())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10); u.connect((host, 9001)); u.send(b'ping')
print('udp', u.recv(2048).decode())
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(10); v.sendto(b'pong', (host, 9001))
print('udp-sendto', v.recvfrom(2048)[0].decode())
`;

// The program a steal serves (an AF_INET listener, as most are): GET answers the client address
// the program sees, through accept() and through getpeername(); PUT answers the bytes it read.
const STEAL_PORT = 8090;
const LOCAL_SERVER = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def reply(self, text):
        b = text.encode(); self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        self.reply('%s %s' % (self.client_address[0], self.connection.getpeername()[0]))
    def do_PUT(self):
        n = int(self.headers.get('Content-Length', '0')); got = 0
        while got < n:
            d = self.rfile.read(min(1 << 20, n - got))
            if not d: break
            got += len(d)
        self.reply('read %d' % got)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('0.0.0.0', ${STEAL_PORT}), H)
print('listening', flush=True)
s.serve_forever()
`;
const UPLOAD_MIB = 200;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let neighbour: TestContainer;
let image = '';
let targetIp = '';
let dir = '';

function fdPassVolumes(): Promise<string[]> {
  return docker()
    .listVolumes({ filters: { label: ['dev.mirrord.fdpass'] } })
    .then((r) => (r.Volumes ?? []).map((v) => v.Name));
}

describe('data paths: fast (fd passing) and stream', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    network = await createNetwork('mirrord-fastpath');
    neighbour = await runContainer({
      name: 'e2e-fp-echo',
      network: network.name,
      aliases: ['fp-echo'],
      cmd: ['python3', '-c', SERVER],
      waitFor: { tcpPort: 9000 },
    });
    target = await runContainer({ name: 'e2e-fp-target', network: network.name, cmd: ['sleep', '100000'] });
    targetIp = await target.ip(network.name);
    dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-fp-'));
    writeFileSync(path.join(dir, 'client.py'), CLIENT);
    writeFileSync(path.join(dir, 'off.json'), JSON.stringify({ agent: { fd_passing: 'off' } }));
    writeFileSync(path.join(dir, 'server.py'), LOCAL_SERVER);
  });
  after(async () => {
    killGroups();
    await target?.remove();
    await neighbour?.remove();
    await network?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const exec = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runCli(['exec', '-t', `docker/${target.name}`, ...args, '--', 'python3', path.join(dir, 'client.py'), 'fp-echo'], {
      env: { MIRRORD_LOG: 'info', MIRRORD_LAYER_LOG: 'debug', ...env },
      timeoutMs: 120_000,
    });

  it('exec: the fast path by default; TCP and UDP leave from the target', async () => {
    const r = await exec([]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
    assert.match(r.stderr, /data path: fast \(sockets made in the target/);
    assert.equal(r.stderr.match(/socket made in the target -> /g)?.length, 2, r.stderr);
    assert.match(r.stderr, /udp fd \d+: socket made in the target/);
    assert.doesNotMatch(r.stderr, /handled via port/);
  });

  it('exec: MIRRORD_AGENT_FD_PASSING=off, and agent.fd_passing: off, take the stream', async () => {
    for (const [args, env, why] of [
      [[], { MIRRORD_AGENT_FD_PASSING: 'off' }, 'agent.fd_passing is off'],
      [['-f', path.join(dir, 'off.json')], {}, 'agent.fd_passing is off'],
    ] as const) {
      const r = await exec([...args], env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
      assert.ok(r.stderr.includes(`data path: stream (${why})`), r.stderr);
      assert.equal(r.stderr.match(/handled via port/g)?.length, 2, r.stderr);
      assert.doesNotMatch(r.stderr, /socket made in the target/);
    }
  });

  it('container mode: the user container takes sockets over the session volume, which goes with the session', async () => {
    const before = await fdPassVolumes();
    const r = await runCli(
      ['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', '-e', 'MIRRORD_LAYER_LOG=debug', image, 'python3', '-c', CLIENT, 'fp-echo'],
      { env: { MIRRORD_LOG: 'info' }, timeoutMs: 180_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
    assert.match(r.stderr, /data path: fast \(container mode/);
    assert.equal(r.stderr.match(/socket made in the target -> /g)?.length, 2, r.stderr);
    // Only this session's volume: the reaper may remove a dead session's one meanwhile.
    assert.deepEqual(
      (await fdPassVolumes()).filter((v) => !before.includes(v)),
      [],
    );
  });

  it('the helper lives in the target (its PID namespace) only as long as the session', async () => {
    const helperRuns = async () => /mirrord-sockhel/.test((await target.exec(['ps', '-eo', 'comm='])).stdout);
    const session = runCli(['exec', '-t', `docker/${target.name}`, '--', 'sleep', '8'], { timeoutMs: 120_000 });
    let seen = false;
    const deadline = Date.now() + 60_000;
    while (!seen && Date.now() < deadline) {
      seen = await helperRuns();
      if (!seen) await new Promise((r) => setTimeout(r, 200));
    }
    const r = await session;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(seen, 'the socket helper never ran in the target during the session');
    const gone = Date.now() + 20_000;
    while ((await helperRuns()) && Date.now() < gone) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await helperRuns(), false, 'the socket helper outlived its agent');
  });

  /** The agent container's CPU time (ns), the socket helper's included. */
  async function agentCpu(): Promise<number> {
    const list = await docker().listContainers({ filters: { label: ['dev.mirrord.agent=true'] } });
    const mine = list.filter((c) => c.Labels['dev.mirrord.target'] === target.id || c.Labels['dev.mirrord.target'] === target.name);
    assert.equal(mine.length, 1, `one agent for the target, found ${mine.length}`);
    const stats = (await docker().getContainer(mine[0]!.Id).stats({ stream: false })) as { cpu_stats: { cpu_usage: { total_usage: number } } };
    return stats.cpu_stats.cpu_usage.total_usage;
  }

  const curl = async (args: string[]) => (await neighbour.exec(['curl', '-s', '-m', '60', ...args])).stdout;

  async function steal(configArgs: string[]) {
    const r = startMirrord(target.name, ['--steal', ...configArgs], ['python3', path.join(dir, 'server.py')], {
      MIRRORD_LOG: 'info',
      MIRRORD_LAYER_LOG: 'debug',
    });
    const url = `http://${target.name}:${STEAL_PORT}`;
    try {
      const clientIp = await neighbour.ip(network.name);
      let seen = '';
      await until(
        'the steal to take effect',
        async () => {
          seen = await curl(['-m', '10', `${url}/ip`]);
          return seen !== '';
        },
        60_000,
      ).catch((err: Error) => assert.fail(`${err.message}\n${r.out()}`));
      // accept()'s address and getpeername() both: the client container itself.
      assert.equal(seen, `${clientIp} ${clientIp}`, r.out());
      await neighbour.exec(['sh', '-c', `head -c ${UPLOAD_MIB * 1024 * 1024} /dev/zero > /tmp/upload`]);
      const before = await agentCpu();
      const t0 = Date.now();
      assert.equal(await curl(['-T', '/tmp/upload', `${url}/up`]), `read ${UPLOAD_MIB * 1024 * 1024}`);
      const seconds = (Date.now() - t0) / 1000;
      const cpuMs = ((await agentCpu()) - before) / 1e6;
      return { out: r.out(), cpuMs, seconds };
    } finally {
      await stopMirrord(r, 'SIGINT');
    }
  }

  it('steal: the program takes the stolen connection itself; the agent carries none of its bytes', async () => {
    const fast = await steal([]);
    assert.match(fast.out, /incoming data path: fast, connections handed to the program/, fast.out);
    assert.match(fast.out, /accept fd \d+: connection taken from the target \(client /, fast.out);
    // The stream path costs the agent well over a second of CPU per 200 MiB; a handed-over
    // connection costs it nothing per byte (what is left: heartbeats, docker stats).
    assert.ok(fast.cpuMs < 300, `agent CPU over the ${UPLOAD_MIB} MiB upload: ${fast.cpuMs.toFixed(0)} ms (${fast.seconds.toFixed(2)} s)`);
    console.log(`fast steal: ${UPLOAD_MIB} MiB upload in ${fast.seconds.toFixed(2)} s, agent CPU ${fast.cpuMs.toFixed(0)} ms`);
  });

  it('steal: a dual-stack node server (AF_INET6 listener) takes the connection; the kernel shows the client', async () => {
    const port = STEAL_PORT + 1;
    const server = `require('http').createServer((q, s) => s.end(q.socket.remoteAddress)).listen(${port}, () => console.log('listening'))`;
    const r = startMirrord(target.name, ['--steal'], [process.execPath, '-e', server], { MIRRORD_LOG: 'info', MIRRORD_LAYER_LOG: 'debug' });
    try {
      const clientIp = await neighbour.ip(network.name);
      let seen = '';
      await until(
        'the steal to take effect',
        async () => {
          seen = await curl([`http://${target.name}:${port}/`]);
          return seen !== '';
        },
        60_000,
      );
      assert.equal(seen, `::ffff:${clientIp}`, r.out());
      assert.match(r.out(), /accept fd \d+: connection taken from the target/);
    } finally {
      await stopMirrord(r, 'SIGINT');
    }
  });

  it('steal with agent.fd_passing: off: the stream carries the connection, the program still sees the client', async () => {
    const stream = await steal(['-f', path.join(dir, 'off.json')]);
    assert.match(stream.out, /incoming data path: stream/, stream.out);
    assert.doesNotMatch(stream.out, /connection taken from the target/);
    assert.ok(stream.cpuMs > 300, `the stream path must show in the agent's CPU: ${stream.cpuMs.toFixed(0)} ms`);
    console.log(`stream steal: ${UPLOAD_MIB} MiB upload in ${stream.seconds.toFixed(2)} s, agent CPU ${stream.cpuMs.toFixed(0)} ms`);
  });
});
