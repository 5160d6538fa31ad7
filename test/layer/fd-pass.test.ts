/**
 * The fast path in the layer (docs/fast-path.md): the real socket helper (agent/sockhelper) in the
 * directory the CLI's own code creates (src/session/fd-pass.ts), started the way the agent starts it,
 * the real layer in small C programs (layer/tests/t_fdpass.c), and the scripted fake intproxy
 * telling the layer to take a socket. `swapped=1` is the program's own proof that its descriptor
 * now holds another socket (a different inode), i.e. the helper's.
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { startSockHelper, type SockHelper } from '../../agent/src/fdpass/helper.js';
import { SessionHandovers } from '../../agent/src/incoming/handover.js';
import type { ApStream } from '../../common/link/stream.js';
import { createLogger } from '../../common/log.js';
import { createFdPass, type FdPass } from '../../src/session/fd-pass.js';
import { FakeIntproxy } from './fake-intproxy.js';
import { GREETING, LAYER_DIR, ROOT, buildLayer, cTest, describeRun, layerEnv, lines, run, startServers, type Servers } from './harness.js';

const log = createLogger('test', 'error');
const PROBE = path.join(LAYER_DIR, 'build/mirrord-fd-probe');
const TAKE = { kind: 'connect', proto: 'tcp', remote: { family: 4, address: '10.77.0.5', port: 80 }, takeSocket: true };

let servers: Servers;
let fp: FdPass;
let helper: SockHelper;
let closedPort: number;
let fake: FakeIntproxy | undefined;

before(async () => {
  buildLayer();
  servers = await startServers();
  fp = createFdPass(log)!;
  assert.ok(fp, 'createFdPass made no directory');
  const env = {
    MIRRORD_AGENT_FDPASS_DIR: fp.hostDir,
    MIRRORD_AGENT_FDPASS_TOKEN: fp.token,
    MIRRORD_AGENT_SOCKHELPER: path.join(ROOT, 'agent/sockhelper/build/mirrord-sockhelper'),
  };
  const h = await startSockHelper(env, log);
  assert.ok(h, 'the socket helper did not start');
  helper = h;
  // A port that refuses: listen, note it, close.
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  closedPort = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
});
after(async () => {
  await helper?.stop();
  await fp?.remove();
  void servers?.close();
});
afterEach(async () => {
  if (fake) assert.deepEqual(fake.violations, []);
  await fake?.stop();
  fake = undefined;
});

async function runFast(mode: string, extra: Record<string, string> = {}) {
  fake = await FakeIntproxy.start({
    connect: { '10.77.0.5:80': { viaPort: servers.tcpPort, take: true }, '10.77.0.9:81': { viaPort: closedPort, take: true } },
  });
  const [ip, port] = mode === 'refused' ? ['10.77.0.9', '81'] : mode === 'bypass' ? ['127.0.0.1', String(servers.tcpPort)] : ['10.77.0.5', '80'];
  const r = await run(
    cTest('t_fdpass'),
    [mode, ip!, port!],
    layerEnv(fake.addr, { MIRRORD_FDPASS_SOCK: fp.socketPath, MIRRORD_FDPASS_TOKEN: fp.token, ...extra }),
  );
  assert.equal(r.code, 0, describeRun(r));
  assert.equal(r.stderr, '', `the layer must be silent by default\n${describeRun(r)}`);
  return r;
}

describe('fd passing: the layer takes a socket made by the helper', { timeout: 120_000 }, () => {
  it('epoll registered before connect() gets its writable event; O_NONBLOCK, FD_CLOEXEC and options survive', async () => {
    const r = await runFast('epoll');
    assert.deepEqual(lines(r.stdout), [
      'connect=EINPROGRESS',
      'swapped=1',
      'events=1 data=42 out=1 hup=0',
      'so_error=0',
      'nonblock=1 cloexec=1',
      'nodelay=1 keepalive=1',
      'mod=0',
      `readable=1 read=${GREETING}`,
      // What the program asked for (the real intproxy routes a taken socket to that very address).
      'peer=10.77.0.5:80',
      'helper_fds=1',
    ]);
    assert.deepEqual(fake!.calls(), [TAKE]);
  });

  it('a refused connect reports ECONNREFUSED from the kernel', async () => {
    const r = await runFast('refused');
    assert.deepEqual(lines(r.stdout), ['refused connect=ECONNREFUSED swapped=1 read=', 'helper_fds=1']);
    assert.deepEqual(fake!.calls(), [{ ...TAKE, remote: { family: 4, address: '10.77.0.9', port: 81 } }]);
  });

  it('a forked child keeps working sockets, over its own helper connection', async () => {
    const r = await runFast('fork');
    assert.deepEqual(lines(r.stdout), [
      `parent connect=0 swapped=1 read=${GREETING}`,
      `child connect=0 swapped=1 read=${GREETING}`,
      'child exit=0',
      `parent-again connect=0 swapped=1 read=${GREETING}`,
    ]);
    assert.deepEqual(fake!.calls(), [TAKE, TAKE, TAKE]);
  });

  it('unconnected UDP: sendto takes a socket once; answers come from the real source; a local destination is refused', async () => {
    const echo = dgram.createSocket('udp4');
    echo.on('message', (m, r) => echo.send(m, r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    const port = echo.address().port;
    try {
      fake = await FakeIntproxy.start({ connect: { [`127.0.0.1:${port}`]: { viaPort: port, take: true } } });
      const r = await run(
        cTest('t_fdpass'),
        ['sendto', '127.0.0.1', String(port)],
        layerEnv(fake.addr, { MIRRORD_FDPASS_SOCK: fp.socketPath, MIRRORD_FDPASS_TOKEN: fp.token }),
      );
      assert.equal(r.code, 0, describeRun(r));
      assert.deepEqual(lines(r.stdout), [
        `sendto=4 swapped=1 echo=ping from=127.0.0.1:${port}`,
        `sendto=4 swapped=1 echo=ping from=127.0.0.1:${port}`,
        'local sendto=ENETUNREACH',
      ]);
      const udp = (p: number, take: boolean) => ({
        kind: 'connect',
        proto: 'udp',
        remote: { family: 4, address: '127.0.0.1', port: p },
        ...(take ? { takeSocket: true } : {}),
      });
      // Asked once per destination; the socket stays the one taken.
      assert.deepEqual(fake.calls(), [udp(port, true), udp(port + 1, true)]);
    } finally {
      echo.close();
    }
  });

  it('a program that never connects anything remote never opens the helper socket', async () => {
    const r = await runFast('bypass');
    assert.deepEqual(lines(r.stdout), [`bypass connect=0 swapped=0 read=${GREETING}`, 'helper_fds=0']);
  });

  it('a helper that refuses (wrong token): the same connect goes through the stream', async () => {
    const r = await runFast('fork', { MIRRORD_FDPASS_TOKEN: 'x'.repeat(32) });
    // Each process asks the helper once; after its refusal the stream carries every connect.
    assert.deepEqual(lines(r.stdout), [
      `parent connect=0 swapped=0 read=${GREETING}`,
      `child connect=0 swapped=0 read=${GREETING}`,
      'child exit=0',
      `parent-again connect=0 swapped=0 read=${GREETING}`,
    ]);
    const { takeSocket: _t, ...plain } = TAKE;
    assert.deepEqual(fake!.calls(), [TAKE, plain, TAKE, plain, plain]);
  });
});

/**
 * A connection as the agent steals one: accepted paused by a dual-stack listener (so an IPv4
 * client's socket is AF_INET6, as in the agent), a line already waiting in it, handed to the helper
 * by the agent's own code. Resolves once the helper holds it, with its id.
 */
async function stolen(): Promise<{ id: string; client: net.Socket; clientPort: number; close(): void }> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '::', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  client.write('hello from client\n');
  const info = { port: 80, mode: 'steal' as const, remoteAddress: '127.0.0.1', remotePort: client.localPort ?? 0, localAddress: '', localPort: 80 };
  const id = await new Promise<string>((resolve, reject) => {
    const offered = new SessionHandovers().offer(
      socket,
      info,
      (i) => {
        resolve(i.handover!);
        return Object.assign(new PassThrough(), { id: 2 }) as unknown as ApStream;
      },
      () => reject(new Error('the helper did not take the connection')),
    );
    if (!offered) reject(new Error('no socket helper to hand the connection to'));
  });
  return { id, client, clientPort: client.localPort!, close: () => (client.destroy(), server.close()) };
}

const REMOTE = { family: 4 as const, address: '10.1.2.3', port: 4321 };

/** t_accept MODE under the layer: the fake intproxy tells it to take `take`; a placeholder connection wakes its accept(). */
async function acceptCase(mode: string, take: string, extra: Record<string, string> = {}) {
  fake = await FakeIntproxy.start({ listen: 0, accept: () => ({ remote: REMOTE, take }) });
  let placeholder: net.Socket | undefined;
  let placeholderGot = '';
  const r = await run(
    cTest('t_accept'),
    [mode],
    layerEnv(fake.addr, { MIRRORD_FDPASS_SOCK: fp.socketPath, MIRRORD_FDPASS_TOKEN: fp.token, ...extra }),
    20_000,
    (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (!m) return;
      placeholder = net.connect(Number(m[1]), '127.0.0.1', () => placeholder!.write('hello via placeholder\n'));
      placeholder.on('data', (d) => (placeholderGot += d.toString()));
      placeholder.on('error', () => undefined);
    },
  );
  assert.equal(r.code, 0, describeRun(r));
  placeholder?.destroy();
  return { r, placeholderGot, calls: fake.calls().map((c) => c.kind) };
}

describe('fd passing: accept() takes the connection an unfiltered steal accepted', { timeout: 120_000 }, () => {
  for (const [mode, flags] of [
    ['accept', 'nonblock=0 cloexec=0'],
    ['accept4', 'nonblock=1 cloexec=1'],
    ['epoll', 'nonblock=1 cloexec=0'],
  ] as const) {
    it(`${mode}: the stolen connection, its real client in the accept address and getpeername, ${flags}`, async () => {
      const s = await stolen();
      try {
        const clientGot = new Promise<string>((resolve) => {
          let got = '';
          s.client.on('data', (d) => (got += d.toString()));
          s.client.on('end', () => resolve(got));
        });
        const { r, placeholderGot, calls } = await acceptCase(mode, s.id);
        const me = `127.0.0.1:${s.clientPort}`;
        assert.deepEqual(lines(r.stdout), [
          /^listening \d+$/.exec(lines(r.stdout)[0]!)![0],
          // The kernel's own peer (the dual-stack socket's ::ffff: form shown in the listener's family).
          `addr=${me} len=16 peer=${me}`,
          `${flags} placeholder=0`,
          'read=hello from client',
        ]);
        // The client gets the answer and then the end: no copy of the connection stayed open
        // in the "agent" (this test) or the helper.
        assert.equal(await clientGot, 'pong hello from client\n');
        assert.equal(placeholderGot, '');
        assert.deepEqual(calls, ['listen', 'accept_take']);
      } finally {
        s.close();
      }
    });
  }

  for (const [what, take, extra] of [
    ['the helper does not know the id', 'f'.repeat(32), {}],
    ['the helper answers nothing', 'f'.repeat(32), { MIRRORD_FDPASS_SOCK: path.join(os.tmpdir(), 'mirrord-no-such-helper.sock') }],
  ] as const) {
    it(`${what}: the placeholder is the connection (the stream), with the remote client the intproxy names`, async () => {
      const { r, placeholderGot, calls } = await acceptCase('accept4', take, extra);
      assert.deepEqual(lines(r.stdout).slice(1), [
        `addr=${REMOTE.address}:${REMOTE.port} len=16 peer=${REMOTE.address}:${REMOTE.port}`,
        'nonblock=1 cloexec=1 placeholder=1',
        'read=hello via placeholder',
      ]);
      assert.equal(placeholderGot, 'pong hello via placeholder\n');
      assert.deepEqual(calls, ['listen', 'accept_take', 'accept']);
    });
  }
});

function probe(socketPath: string, token: string, as?: { uid: number; gid: number }, bin = PROBE): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(bin, [socketPath], { env: { MIRRORD_FDPASS_TOKEN: token }, timeout: 10_000, ...as }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out: (stdout + stderr).trim() });
    });
  });
}

describe('fd passing: the helper hands sockets to the session alone', { timeout: 60_000 }, () => {
  it('with the token: a TCP socket and this kernel boot id', async () => {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    assert.deepEqual(await probe(fp.socketPath, fp.token), { code: 0, out: `ok ${bootId}` });
    assert.equal(helper.bootId, bootId);
  });

  it('without the token, or with another: nothing', async () => {
    for (const token of ['', 'x', fp.token.slice(0, -1), `${fp.token}x`, 'y'.repeat(fp.token.length)]) {
      const r = await probe(fp.socketPath, token);
      assert.equal(r.code, 1, `token ${JSON.stringify(token)}: ${r.out}`);
      assert.match(r.out, /^the helper refused the token: /);
    }
  });

  it("another user cannot reach the socket: the directory is 0700 and the user's", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to run the probe as another user');
    const parent = path.dirname(fp.hostDir);
    assert.equal(statSync(parent).mode & 0o777, 0o700);
    assert.equal(statSync(parent).uid, process.getuid());
    // The probe itself must be runnable by that user: a copy outside the checkout.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fd-probe-'));
    try {
      const bin = path.join(dir, 'mirrord-fd-probe');
      copyFileSync(PROBE, bin);
      chmodSync(dir, 0o755);
      chmodSync(bin, 0o755);
      const r = await probe(fp.socketPath, fp.token, { uid: 65534, gid: 65534 }, bin);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /^connect to the socket helper: Permission denied/);
      // The same copy as this user, to show that the refusal is the directory's, not the copy's.
      assert.equal((await probe(fp.socketPath, fp.token, undefined, bin)).code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds no capability', () => {
    const status = readFileSync(`/proc/${helper.pid}/status`, 'utf8');
    for (const k of ['CapEff', 'CapPrm', 'CapInh', 'CapAmb']) assert.match(status, new RegExp(`^${k}:\\s+0+$`, 'm'), k);
    assert.match(status, /^NoNewPrivs:\s+1$/m);
  });
});
