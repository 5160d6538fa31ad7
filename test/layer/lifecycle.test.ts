/**
 * The layer tier, part 4: a process's life under the layer, against the scripted fake intproxy.
 * exec with an environment that drops the session, posix_spawn and vfork; signals interrupting a
 * call that waits for the intproxy; calls made after exit() began; 100 threads at once; 50
 * children forked at once.
 */
import { strict as assert } from 'node:assert';
import { after, afterEach, before, describe, it } from 'node:test';
import { FakeIntproxy, type FakeScript } from './fake-intproxy.js';
import { ASAN, GREETING, LAYER_SO, buildLayer, cTest, describeRun, layerEnv, lines, run, startServers, type RunResult, type Servers } from './harness.js';
import type { LpRequest } from '../../common/protocol/layer/index.js';

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

const REMOTE_FILE = '/srv/remote.txt';
const REMOTE_CONTENT = 'remote first line\nsecond\n';

async function startFake(extra: Partial<FakeScript> = {}): Promise<FakeIntproxy> {
  fake = await FakeIntproxy.start({
    dns: { 'only-remote.test': ['10.77.0.5'] },
    connect: { '10.77.0.5:80': { viaPort: servers.tcpPort } },
    files: { [REMOTE_FILE]: REMOTE_CONTENT },
    ...extra,
  });
  return fake;
}

/** Remote files on, nothing kept local by hints: every open is asked about. */
function env(f: FakeIntproxy): NodeJS.ProcessEnv {
  return layerEnv(f.addr, { MIRRORD_FS: 'on' });
}

const CONNECTED = `connect=0 errno=0`;

describe('exec and spawn with an environment without the session', () => {
  // t_exec resolves a name (its own session), then starts t_connect with envp = {PATH, NULL}.
  const child = ['v4', '10.77.0.5', '80'];
  for (const mode of ['execve', 'execle', 'execvpe', 'fexecve', 'execveat', 'unsetenv'] as const) {
    it(`${mode}: the new image is intercepted and opens its own connection`, async () => {
      const f = await startFake();
      const r = await run(cTest('t_exec'), [mode, cTest('t_connect'), ...child], env(f));
      assert.equal(r.code, 0, describeRun(r));
      assert.deepEqual(lines(r.stdout).slice(0, 3), ['parent gai=0', CONNECTED, 'peer=10.77.0.5:80']);
      assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
      // Same process, new image: a second connection, naming no parent (it was not forked).
      const hellos = f.hellos().map(({ pid, parentPid, exe }) => ({ pid, parentPid, exe }));
      assert.deepEqual(hellos, [
        { pid: r.pid, parentPid: 0, exe: cTest('t_exec') },
        { pid: r.pid, parentPid: 0, exe: cTest('t_connect') },
      ]);
      assert.equal(f.calls().filter((c) => c.kind === 'connect').length, 1);
    });
  }

  it('only LD_PRELOAD removed, the session kept (`env -u LD_PRELOAD cmd`): the opt-out is honoured', async () => {
    const f = await startFake();
    // The child dials a local server: the layer would ask the intproxy first, a plain process does not.
    const r = await run(cTest('t_exec'), ['optout', cTest('t_connect'), 'v4', '127.0.0.1', String(servers.tcpPort)], env(f));
    assert.equal(r.code, 0, describeRun(r));
    assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
    assert.deepEqual(
      f.hellos().map(({ exe }) => exe),
      [cTest('t_exec')],
      'only the parent spoke to the intproxy',
    );
    assert.equal(f.calls().filter((c) => c.kind === 'connect').length, 0);
  });

  it("execve with the program's own LD_PRELOAD: the layer is put first, the program's library kept", async () => {
    const f = await startFake();
    // libctor.so resolves a name in its constructor: its line proves it is loaded, and intercepted.
    const r = await run(cTest('t_exec'), ['preload', cTest('t_connect'), ...child], { ...env(f), OTHER_PRELOAD: cTest('libctor.so') });
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout).slice(0, 3), ['parent gai=0', 'ctor gai=0 addr=10.77.0.5:80', CONNECTED]);
    assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
  });

  for (const mode of ['spawn', 'spawnp', 'vfork'] as const) {
    it(`${mode}: the child is intercepted and its HELLO names its parent`, async () => {
      const f = await startFake();
      const r = await run(cTest('t_exec'), [mode, cTest('t_connect'), ...child], env(f));
      assert.equal(r.code, 0, describeRun(r));
      const out = lines(r.stdout);
      assert.deepEqual([out[0], out[1], out.at(-1)], ['parent gai=0', CONNECTED, 'child exit=0'], describeRun(r));
      assert.ok(r.stdout.includes(`read=${GREETING}`), describeRun(r));
      const hellos = f.hellos();
      assert.equal(hellos.length, 2, JSON.stringify(hellos));
      assert.equal(hellos[1]!.exe, cTest('t_connect'));
      assert.equal(hellos[1]!.ppid, r.pid);
      assert.equal(hellos[1]!.parentPid, r.pid);
      assert.notEqual(hellos[1]!.pid, r.pid);
    });
  }

  it("execve of /bin/sh -c: the shell's own child is intercepted too", async () => {
    const f = await startFake();
    const r = await run(cTest('t_exec'), ['execve', '/bin/sh', '-c', `${cTest('t_connect')} v4 10.77.0.5 80 && echo sh-done`], env(f));
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(lines(r.stdout)[1], CONNECTED, describeRun(r));
    assert.ok(r.stdout.includes(`read=${GREETING}`) && r.stdout.trim().endsWith('sh-done'), describeRun(r));
    assert.ok(
      f.hellos().some((h) => h.exe === cTest('t_connect')),
      JSON.stringify(f.hellos()),
    );
  });
});

/** Holds back the answer to the first request of `kind`. */
function holdFirst(kind: LpRequest['kind']): (req: LpRequest) => boolean {
  let held = false;
  return (req) => {
    if (held || req.kind !== kind) return false;
    held = true;
    return true;
  };
}

/**
 * Signals the program until it reports the interrupted call: one signal may arrive just before
 * the layer starts waiting (as with libc), so a single one could be missed. No timing is asserted.
 */
async function interruptUntil(f: FakeIntproxy, cmd: string, args: string[], done: RegExp): Promise<RunResult> {
  let pid = 0;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  const r = run(cmd, args, env(f), 20000, (line, p) => {
    if (line === 'ready') {
      pid = p;
      void f.holding().then(() => {
        timer = setInterval(() => {
          try {
            if (!finished) process.kill(pid, 'SIGUSR1');
          } catch {
            // Already gone: its output says what happened.
          }
        }, 20);
      });
    }
    if (done.test(line)) {
      finished = true;
      clearInterval(timer);
    }
  });
  const result = await r;
  clearInterval(timer);
  return result;
}

describe('a signal interrupting a call that waits for the intproxy', () => {
  it('connect, handler without SA_RESTART: EINTR; connecting again is answered (the late answer skipped)', async () => {
    const f = await startFake({ hold: holdFirst('connect') });
    const r = await interruptUntil(f, cTest('t_eintr'), ['connect', 'norestart', '10.77.0.5', '80'], /^connect1=/);
    assert.equal(r.code, 0, describeRun(r));
    const out = lines(r.stdout).filter((l) => l !== 'handled');
    assert.deepEqual(out, ['ready', 'connect1=-1 errno=EINTR', 'connect2=0 errno=0', `read=${GREETING}`]);
    assert.ok(r.stdout.includes('handled'));
    assert.equal(f.calls().filter((c) => c.kind === 'connect').length, 2);
    assert.equal(f.hellos().length, 1, 'the same connection served the second connect');
  });

  it('connect, handler with SA_RESTART: the call goes on and succeeds', async () => {
    const f = await startFake({ hold: holdFirst('connect') });
    let pid = 0;
    const r = await run(cTest('t_eintr'), ['connect', 'restart', '10.77.0.5', '80'], env(f), 20000, (line, p) => {
      if (line === 'ready') {
        pid = p;
        void f.holding().then(() => process.kill(pid, 'SIGUSR1'));
      }
      if (line === 'handled') f.release();
    });
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['ready', 'handled', 'connect1=0 errno=0', `read=${GREETING}`]);
    assert.equal(f.calls().filter((c) => c.kind === 'connect').length, 1);
  });

  it('non-blocking connect, handler without SA_RESTART: never EINTR (event loops do not expect it)', async () => {
    const f = await startFake({ hold: holdFirst('connect') });
    const r = await run(cTest('t_eintr'), ['connect', 'nonblock', '10.77.0.5', '80'], env(f), 20000, (line, pid) => {
      if (line === 'ready') void f.holding().then(() => process.kill(pid, 'SIGUSR1'));
      if (line === 'handled') f.release();
    });
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['ready', 'handled', 'connect1=-1 errno=EINPROGRESS', `read=${GREETING}`]);
  });

  it('read of a remote file, handler without SA_RESTART: EINTR; the next read returns the data', async () => {
    const f = await startFake({ hold: holdFirst('read') });
    const r = await interruptUntil(f, cTest('t_eintr'), ['read', 'norestart', REMOTE_FILE], /^read1=/);
    assert.equal(r.code, 0, describeRun(r));
    const out = lines(r.stdout).filter((l) => l !== 'handled');
    assert.deepEqual(out, ['ready', 'read1=-1 errno=EINTR data=', 'read2=5 data=remot']);
    assert.equal(f.openFiles, 0, 'closed');
  });
});

describe('start-up', () => {
  // ASan replaces malloc itself (libasan comes first), so this allocator would never be called.
  it(
    'an allocator whose first call reaches a hook (jemalloc: readlink) gets the layer initialised without allocating',
    { skip: ASAN ? 'ASan replaces malloc' : false },
    async () => {
      const f = await startFake();
      // /etc local without asking, as the CLI's hints say (asking allocates a frame: layer/README.md).
      const e = { ...env(f), MIRRORD_FS_LOCAL: '/etc', LD_PRELOAD: `${LAYER_SO}:${cTest('libmallocinit.so')}`, MIRRORD_LAYER_LOG: 'debug' };
      const r = await run(cTest('t_resolve'), ['gai=only-remote.test'], e);
      assert.equal(r.code, 0, describeRun(r));
      const err = lines(r.stderr);
      const begin = err.indexOf('malloc-init: begin');
      const loaded = err.findIndex((l) => /^mirrord-layer\[\d+\]: loaded, intproxy /.test(l));
      const end = err.indexOf('malloc-init: end');
      assert.ok(begin >= 0 && begin < loaded && loaded < end, `the layer initialised inside the allocator's init\n${describeRun(r)}`);
      assert.equal(lines(r.stdout)[0], 'gai only-remote.test rc=0 (ok)');
    },
  );
});

describe('calls after exit() began', () => {
  for (const early of [true, false]) {
    it(`atexit handler and destructor are served${early ? '' : ' (first intproxy call during exit)'}`, async () => {
      const f = await startFake();
      const r = await run(cTest('t_atexit'), ['only-remote.test', '80', REMOTE_FILE, ...(early ? ['early'] : [])], env(f));
      assert.equal(r.code, 0, describeRun(r));
      assert.equal(r.signal, null);
      const who = [...(early ? ['main'] : []), 'atexit', 'destructor'];
      assert.deepEqual(
        lines(r.stdout),
        who.flatMap((w) => [`${w} gai=0 connect=0 read=${GREETING}`, `${w} open=0 line=remote first line`]),
      );
      assert.equal(f.openFiles, 0);
    });
  }
});

describe('many at once', () => {
  it('100 threads: resolve + connect, connect, open + read of a remote file, mixed', async () => {
    const f = await startFake();
    const r = await run(cTest('t_threads'), ['only-remote.test', '80', '100', REMOTE_FILE], env(f), 60000);
    assert.equal(r.code, 0, describeRun(r));
    const out = lines(r.stdout);
    const connected = out.filter((l) => / connect=0 peer=10\.77\.0\.5:80 read=hello from local server$/.test(l));
    const files = out.filter((l) => / file=remote first line$/.test(l));
    assert.equal(connected.length, 67, describeRun(r)); // ids 0,1 mod 3 of 0..99
    assert.equal(files.length, 33, describeRun(r));
    assert.equal(out.at(-1), 'threads ok=100');
    const calls = f.calls();
    assert.equal(calls.filter((c) => c.kind === 'getaddrinfo').length, 1 + 34);
    assert.equal(calls.filter((c) => c.kind === 'connect').length, 67);
    assert.equal(calls.filter((c) => c.kind === 'open' && c.path === REMOTE_FILE).length, 33);
    assert.equal(f.hellos().length, 1);
    assert.equal(f.openFiles, 0);
  });

  it('50 forked children connecting at once: all served, no descriptor leaked in the parent', async () => {
    const f = await startFake();
    const r = await run(cTest('t_forkstress'), ['10.77.0.5', '80', '50'], env(f), 60000);
    assert.equal(r.code, 0, describeRun(r));
    const out = lines(r.stdout);
    const children = out.filter((l) => /^child pid=\d+ connect=0 peer=10\.77\.0\.5:80 read=hello from local server$/.test(l));
    assert.equal(children.length, 50, describeRun(r));
    assert.ok(out.includes('children ok=50'), describeRun(r));
    const fds = /^fds before=(\d+) after=(\d+)$/.exec(out.at(-1) ?? '');
    assert.ok(fds, describeRun(r));
    assert.equal(fds[2], fds[1], 'descriptors before and after');
    const hellos = f.hellos();
    assert.equal(hellos.length, 51);
    assert.equal(hellos.filter((h) => h.parentPid === r.pid && h.ppid === r.pid).length, 50);
    assert.equal(f.calls().filter((c) => c.kind === 'connect').length, 52);
  });
});
