/**
 * The layer tier, part 1: the small C programs of layer/tests/ run under the real
 * libmirrord_layer.so against the scripted fake intproxy. Each case asserts the program's own
 * output (where its socket really went, what getpeername says) and the messages the layer sent.
 */
import { strict as assert } from 'node:assert';
import os from 'node:os';
import { after, afterEach, before, describe, it } from 'node:test';
import { LP_VERSION } from '../../common/version.js';
import { FakeIntproxy, type FakeScript } from './fake-intproxy.js';
import { GREETING, buildLayer, cTest, describeRun, layerEnv, lines, run, startServers, type Servers } from './harness.js';

let servers: Servers;
let fake: FakeIntproxy | undefined;

before(async () => {
  buildLayer();
  servers = await startServers();
});
after(() => servers.close());
afterEach(async () => {
  if (fake) assert.deepEqual(fake.violations, []);
  await fake?.stop();
  fake = undefined;
});

function script(): FakeScript {
  return {
    dns: { 'only-remote.test': ['10.77.0.5'], 'dual.test': ['10.77.0.6', 'fd00::6'], 'unknown.test': -2 },
    canonname: { 'only-remote.test': 'only-remote.test.svc.cluster.local' },
    connect: {
      '10.77.0.5:80': { viaPort: servers.tcpPort },
      '10.77.0.9:81': -111,
      '[fd00::6]:443': { viaPort: servers.tcpPort },
    },
  };
}

async function runC(name: string, args: string[], extraEnv: Record<string, string> = {}) {
  fake = await FakeIntproxy.start(script());
  const r = await run(cTest(name), args, layerEnv(fake.addr, extraEnv));
  assert.equal(r.stderr, '', `the layer must be silent by default\n${describeRun(r)}`);
  return r;
}

const TCP80 = { kind: 'connect', proto: 'tcp', remote: { family: 4, address: '10.77.0.5', port: 80 } };

describe('connect', () => {
  it('blocking IPv4: redirected, getpeername reports the remote, dup/dup2 keep it, close forgets it', async () => {
    const r = await runC('t_connect', ['v4', '10.77.0.5', '80']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'connect=0 errno=0',
      'peer=10.77.0.5:80',
      'dup_peer=10.77.0.5:80',
      'dup2_peer=10.77.0.5:80',
      `read=${GREETING}`,
      'fresh_peer=error:ENOTCONN',
    ]);
    assert.deepEqual(fake!.calls(), [TCP80]);
    const [hello] = fake!.hellos();
    assert.equal(fake!.hellos().length, 1);
    assert.equal(hello!.version, LP_VERSION);
    assert.equal(hello!.pid, r.pid);
    assert.equal(hello!.ppid, process.pid);
    assert.equal(hello!.parentPid, 0);
    assert.equal(hello!.exe, cTest('t_connect'));
  });

  it('IPv6 socket to an IPv4 destination: sent as family 4, peer reported as ::ffff:a.b.c.d', async () => {
    const r = await runC('t_connect', ['v6', '10.77.0.5', '80']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout).slice(0, 2), ['connect=0 errno=0', 'peer=[::ffff:10.77.0.5]:80']);
    assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
    assert.deepEqual(fake!.calls(), [TCP80]);
  });

  it('IPv6 socket to an IPv6 destination: sent as family 6', async () => {
    const r = await runC('t_connect', ['v6', 'fd00::6', '443']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout).slice(0, 2), ['connect=0 errno=0', 'peer=[fd00::6]:443']);
    assert.deepEqual(fake!.calls(), [{ kind: 'connect', proto: 'tcp', remote: { family: 6, address: 'fd00::6', port: 443 } }]);
  });

  // Linux answers the first connect() after completion with 0 (EISCONN only after that), the same
  // as without the layer; what matters is that it reaches the same socket, not the intproxy.
  it('non-blocking: EINPROGRESS, poll, then connect() again succeeds without a second request', async () => {
    const r = await runC('t_connect', ['nonblock', '10.77.0.5', '80']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout).slice(0, 4), ['connect=-1 errno=EINPROGRESS', 'poll=1 so_error=0', 'reconnect=0 errno=0', 'peer=10.77.0.5:80']);
    assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
    assert.deepEqual(fake!.calls(), [TCP80]);
  });

  it('refused by the intproxy: ECONNREFUSED', async () => {
    const r = await runC('t_connect', ['v4', '10.77.0.9', '81']);
    assert.equal(r.code, 1, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['connect=-1 errno=ECONNREFUSED']);
    assert.deepEqual(fake!.calls(), [{ kind: 'connect', proto: 'tcp', remote: { family: 4, address: '10.77.0.9', port: 81 } }]);
  });

  it('bypass: a loopback destination the intproxy leaves alone connects for real', async () => {
    const r = await runC('t_connect', ['v4', '127.0.0.1', String(servers.tcpPort)]);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(lines(r.stdout)[1], `peer=127.0.0.1:${servers.tcpPort}`);
    assert.deepEqual(fake!.calls(), [{ kind: 'connect', proto: 'tcp', remote: { family: 4, address: '127.0.0.1', port: servers.tcpPort } }]);
  });
});

describe('name resolution', () => {
  it('getaddrinfo AF_UNSPEC, socktype 0, AI_CANONNAME: 3 entries per address, canonname, freeaddrinfo', async () => {
    const r = await runC('t_resolve', ['gai=only-remote.test', 'gai=dual.test']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'gai only-remote.test rc=0 (ok)',
      'gai canon=only-remote.test.svc.cluster.local',
      'gai family=2 socktype=1 protocol=6 addr=10.77.0.5:80',
      'gai family=2 socktype=2 protocol=17 addr=10.77.0.5:80',
      'gai family=2 socktype=3 protocol=0 addr=10.77.0.5:80',
      'gai dual.test rc=0 (ok)',
      'gai canon=dual.test',
      'gai family=2 socktype=1 protocol=6 addr=10.77.0.6:80',
      'gai family=2 socktype=2 protocol=17 addr=10.77.0.6:80',
      'gai family=2 socktype=3 protocol=0 addr=10.77.0.6:80',
      'gai family=10 socktype=1 protocol=6 addr=[fd00::6]:80',
      'gai family=10 socktype=2 protocol=17 addr=[fd00::6]:80',
      'gai family=10 socktype=3 protocol=0 addr=[fd00::6]:80',
    ]);
    assert.deepEqual(fake!.calls(), [
      { kind: 'getaddrinfo', node: 'only-remote.test', family: 0 },
      { kind: 'getaddrinfo', node: 'dual.test', family: 0 },
    ]);
  });

  it('service names resolved by the layer; AF_INET6 + AI_V4MAPPED; bad service never asks', async () => {
    const r = await runC('t_resolve', ['gai_stream=only-remote.test', 'gai6=only-remote.test', 'gai_badservice=only-remote.test']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'gai_stream only-remote.test rc=0 (ok)',
      'gai_stream family=2 socktype=1 protocol=6 addr=10.77.0.5:80',
      'gai6 only-remote.test rc=0 (ok)',
      'gai6 family=10 socktype=1 protocol=6 addr=[::ffff:10.77.0.5]:0',
      'gai_badservice only-remote.test rc=-8 (Servname not supported for ai_socktype)',
    ]);
    assert.deepEqual(fake!.calls(), [
      { kind: 'getaddrinfo', node: 'only-remote.test', family: 0 },
      { kind: 'getaddrinfo', node: 'only-remote.test', family: 0 },
    ]);
  });

  it('unknown name: EAI_NONAME from the intproxy, and HOST_NOT_FOUND for gethostbyname', async () => {
    const r = await runC('t_resolve', ['gai=unknown.test', 'hbn=unknown.test', 'hbnr=unknown.test']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'gai unknown.test rc=-2 (Name or service not known)',
      'hbn unknown.test h_errno=1',
      'hbnr small rc=0',
      'hbnr unknown.test rc=0 result=NULL h_errno=1',
    ]);
    assert.equal(fake!.calls().length, 4);
  });

  it('gethostbyname, gethostbyname2 and gethostbyname_r (ERANGE on a small buffer)', async () => {
    const r = await runC('t_resolve', ['hbn=only-remote.test', 'hbn2=dual.test', 'hbnr=dual.test']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'hbn name=only-remote.test.svc.cluster.local length=4',
      'hbn addr=10.77.0.5',
      'hbn2 name=dual.test length=16',
      'hbn2 addr=fd00::6',
      'hbnr small rc=ERANGE',
      'hbnr name=dual.test length=4',
      'hbnr addr=10.77.0.6',
    ]);
    assert.deepEqual(fake!.calls(), [
      { kind: 'getaddrinfo', node: 'only-remote.test', family: 2 },
      { kind: 'getaddrinfo', node: 'dual.test', family: 10 },
      { kind: 'getaddrinfo', node: 'dual.test', family: 2 },
      { kind: 'getaddrinfo', node: 'dual.test', family: 2 },
    ]);
  });

  it('numeric hosts and names the intproxy bypasses go to libc', async () => {
    const r = await runC('t_resolve', ['gai_stream=127.0.0.1', 'gai_stream=localhost']);
    assert.equal(r.code, 0, describeRun(r));
    assert.ok(r.stdout.includes('gai_stream family=2 socktype=1 protocol=6 addr=127.0.0.1:80'), describeRun(r));
    assert.deepEqual(fake!.calls(), [{ kind: 'getaddrinfo', node: 'localhost', family: 0 }]);
  });

  it('a library constructor resolving before main is intercepted', async () => {
    const r = await runC('t_ctor', []);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['ctor gai=0 addr=10.77.0.5:80', 'main marker=42']);
    assert.deepEqual(fake!.calls(), [{ kind: 'getaddrinfo', node: 'only-remote.test', family: 2 }]);
  });

  it("... and that constructor really runs before the layer's own (the loader's trace says so)", async () => {
    fake = await FakeIntproxy.start(script());
    const r = await run(cTest('t_ctor'), [], layerEnv(fake.addr, { LD_DEBUG: 'files' }));
    assert.equal(r.code, 0, describeRun(r));
    const inits = lines(r.stderr).flatMap((l) => /calling init: (\S+)$/.exec(l)?.[1] ?? []);
    const lib = inits.findIndex((p) => p.endsWith('/libctor.so'));
    const layer = inits.findIndex((p) => p.endsWith('/libmirrord_layer.so'));
    assert.ok(lib >= 0 && layer >= 0 && lib < layer, inits.join('\n'));
    assert.equal(lines(r.stdout)[0], 'ctor gai=0 addr=10.77.0.5:80');
  });
});

describe('processes and threads', () => {
  it('fork: parent and child both redirected; the child has its own connection naming its parent', async () => {
    const r = await runC('t_fork', ['10.77.0.5', '80']);
    assert.equal(r.code, 0, describeRun(r));
    const out = lines(r.stdout);
    assert.equal(out.length, 4, describeRun(r));
    const childPid = Number(/^child pid=(\d+) /.exec(out[1]!)?.[1]);
    assert.deepEqual(out, [
      `parent pid=${r.pid} connect=0 peer=10.77.0.5:80 read=${GREETING}`,
      `child pid=${childPid} connect=0 peer=10.77.0.5:80 read=${GREETING}`,
      'child exit=0',
      `parent-again pid=${r.pid} connect=0 peer=10.77.0.5:80 read=${GREETING}`,
    ]);
    const hellos = fake!.hellos().map(({ pid, ppid, parentPid }) => ({ pid, ppid, parentPid }));
    assert.deepEqual(hellos, [
      { pid: r.pid, ppid: process.pid, parentPid: 0 },
      { pid: childPid, ppid: r.pid, parentPid: r.pid },
    ]);
    // Three connects over two connections: the child's went over its own.
    const byConn = fake!.requests.filter((x) => x.req.kind === 'connect').map((x) => x.conn);
    assert.deepEqual(byConn, [1, 2, 1]);
  });

  it('8 threads resolving and connecting at once', async () => {
    const r = await runC('t_threads', ['only-remote.test', '80', '8']);
    assert.equal(r.code, 0, describeRun(r));
    const ok = lines(r.stdout).filter((l) => / connect=0 peer=10\.77\.0\.5:80 read=hello from local server$/.test(l));
    assert.equal(ok.length, 8, describeRun(r));
    assert.ok(r.stdout.includes('threads ok=8'));
    const calls = fake!.calls();
    assert.equal(calls.filter((c) => c.kind === 'getaddrinfo').length, 8);
    assert.equal(calls.filter((c) => c.kind === 'connect').length, 8);
    assert.equal(fake!.hellos().length, 1, 'one connection per process, shared by its threads');
  });

  it("close_range(3, ~0) really closes the layer's descriptor: the layer notices and reconnects", async () => {
    const r = await runC('t_closefds', ['close_range', 'only-remote.test', '80']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'gai=0',
      `connect=0 peer=10.77.0.5:80 read=${GREETING}`,
      'close_range=0',
      'gai=0',
      `connect=0 peer=10.77.0.5:80 read=${GREETING}`,
    ]);
    const hellos = fake!.hellos();
    assert.equal(hellos.length, 2, 'a second connection after the first was closed behind its back');
    assert.deepEqual(
      fake!.requests.filter((x) => x.req.kind !== 'hello').map((x) => x.conn),
      [1, 1, 2, 2],
    );
  });

  for (const mode of ['close', 'dup2'] as const) {
    it(`the program ${mode === 'close' ? 'closing' : 'dup2-ing over'} every fd 3..1023 keeps the layer working`, async () => {
      const r = await runC('t_closefds', [mode, 'only-remote.test', '80']);
      assert.equal(r.code, 0, describeRun(r));
      const out = lines(r.stdout);
      assert.deepEqual(
        out.filter((l) => !l.startsWith('touched=')),
        ['gai=0', `connect=0 peer=10.77.0.5:80 read=${GREETING}`, 'gai=0', `connect=0 peer=10.77.0.5:80 read=${GREETING}`],
      );
      assert.equal(fake!.hellos().length, 1, 'the connection survived: no second HELLO');
      assert.equal(fake!.calls().length, 4);
    });
  }
});

describe('host name (feature.hostname: MIRRORD_HOSTNAME)', () => {
  it("gethostname and uname report the target's name; one too long for the buffer is ENAMETOOLONG", async () => {
    const r = await runC('t_hostname', [], { MIRRORD_HOSTNAME: 'target-host.example' });
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['gethostname=target-host.example', 'nodename=target-host.example', 'small=ENAMETOOLONG']);
  });

  it("without it, or outside a session, the machine's own name", async () => {
    const own = os.hostname();
    const r = await runC('t_hostname', []);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout).slice(0, 2), [`gethostname=${own}`, `nodename=${own}`]);
    const outside = await run(cTest('t_hostname'), [], layerEnv(undefined, { MIRRORD_HOSTNAME: 'target-host.example' }));
    assert.deepEqual(lines(outside.stdout).slice(0, 2), [`gethostname=${own}`, `nodename=${own}`]);
  });
});
