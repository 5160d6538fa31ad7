/**
 * feature.network.outgoing.unix_streams (issue 17, item 3): a program's connect() on a unix
 * stream socket to a path matching a pattern reaches the socket of that path inside the target
 * container, not the local one; other paths stay local. Real CLI, layer and agent against a real
 * Docker target running a unix socket server; the local program is python3 under `mirrord exec`,
 * then inside a local container under `mirrord container` (as root and as another user).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-unix-e2e-'));
/** A path that exists on both sides: the test's local server and the target's server listen on it. */
const shared = path.join(dir, 'both.sock');
/** Only local (no pattern matches it). */
const localOnly = path.join(dir, 'local-only.sock');
/** In the target: longer than sun_path once prefixed with /proc/PID/root (the agent's O_PATH form). */
const deep = `/run/tgt/${'d'.repeat(85)}/app.sock`;

// The target's server: for each connection, a greeting naming the path, then "got:" + the client's line.
const SERVER = `
import os, socket, sys, threading
def serve(p):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(p)
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"target " + p.encode() + b"\\n")
        d = b""
        while not d.endswith(b"\\n"):
            x = c.recv(65536)
            if not x:
                break
            d += x
        c.sendall(b"got:" + d)
        c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
open("/tmp/ready", "w").close()
threading.Event().wait()
`;

// The local program: connects, prints the greeting, sends a line, prints the answer (or the errno).
const CLIENT = `
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
    except OSError as e:
        print(p, "errno", e.errno)
        continue
    f = s.makefile("rb")
    greet = f.readline().decode().strip()
    s.sendall(b"ping " + p.encode() + b"\\n")
    s.shutdown(socket.SHUT_WR)
    print(p, "|", greet, "|", f.read().decode().strip(), "|", s.getpeername())
`;

let target: TestContainer;
const locals: net.Server[] = [];

function localServer(at: string): Promise<net.Server> {
  const srv = net.createServer((c) => {
    c.write(`local ${at}\n`);
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.endsWith('\n')) c.end(`got:${got}`);
    });
  });
  locals.push(srv);
  return new Promise((resolve) => srv.listen(at, () => resolve(srv)));
}

function config(obj: unknown): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

const PY = '/usr/bin/python3';

describe('feature.network.outgoing.unix_streams', { timeout: 600_000 }, () => {
  before(async () => {
    mkdirSync(dir, { recursive: true });
    await localServer(shared);
    await localServer(localOnly);
    target = await runContainer({ name: 'unix-target', cmd: ['python3', '-c', SERVER, shared, deep, '/run/tgt/app.sock'] });
    // A matching path that is a regular file in the target: the kernel refuses the connect.
    for (let i = 0; i < 50; i++) {
      if ((await target.exec(['test', '-e', '/tmp/ready'])).code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await target.exec(['sh', '-c', 'touch /run/tgt/plain-file'])).code, 0);
  });

  after(async () => {
    for (const s of locals) s.close();
    await target?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a matching path reaches the socket inside the target, both ways; a non-matching one stays local', async () => {
    const cfg = config({ feature: { network: { outgoing: { unix_streams: ['both\\.sock$', '^/run/tgt/'] } } } });
    const r = await runCli(['exec', '-t', `docker/${target.name}`, '-f', cfg, '--', PY, '-c', CLIENT, shared, '/run/tgt/app.sock', deep, localOnly], {
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    // The same path exists locally: the target's server answered, so the local one was not reached.
    assert.equal(lines[0], `${shared} | target ${shared} | got:ping ${shared} | ${shared}`);
    assert.equal(lines[1], `/run/tgt/app.sock | target /run/tgt/app.sock | got:ping /run/tgt/app.sock | /run/tgt/app.sock`);
    assert.equal(lines[2], `${deep} | target ${deep} | got:ping ${deep} | ${deep}`);
    assert.equal(lines[3], `${localOnly} | local ${localOnly} | got:ping ${localOnly} | ${localOnly}`);
    assert.equal(lines.length, 4, r.stdout);
  });

  it('a single string is one pattern; without the key every unix socket stays local', async () => {
    const one = await runCli(
      ['exec', '-t', `docker/${target.name}`, '-f', config({ feature: { network: { outgoing: { unix_streams: 'both' } } } }), '--', PY, '-c', CLIENT, shared],
      { timeoutMs: 120_000 },
    );
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`\\| target ${shared} \\|`));
    const none = await runCli(['exec', '-t', `docker/${target.name}`, '--', PY, '-c', CLIENT, shared], { timeoutMs: 120_000 });
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, new RegExp(`\\| local ${shared} \\|`));
  });

  it('a matching path with no socket in the target fails as the kernel would: ENOENT, or ECONNREFUSED for a file', async () => {
    const cfg = config({ feature: { network: { outgoing: { unix_streams: '^/run/tgt/' } } } });
    const r = await runCli(
      ['exec', '-t', `docker/${target.name}`, '-f', cfg, '--', PY, '-c', CLIENT, '/run/tgt/missing.sock', '/run/tgt/plain-file', '/run/tgt/no/dir.sock'],
      {
        timeoutMs: 120_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['/run/tgt/missing.sock errno 2', '/run/tgt/plain-file errno 111', '/run/tgt/no/dir.sock errno 2']);
  });

  it('an invalid pattern is refused before anything starts', async () => {
    const r = await runCli(
      ['exec', '-t', `docker/${target.name}`, '-f', config({ feature: { network: { outgoing: { unix_streams: ['(unclosed'] } } } }), '--', 'true'],
      {
        timeoutMs: 60_000,
      },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unix_streams.*invalid regex "\(unclosed"/s);
  });

  it('container mode: a local container reaches the socket inside the target too, as root and as another user', async () => {
    const image = await toolsImage();
    const cfg = config({ feature: { network: { outgoing: { unix_streams: ['^/run/tgt/', 'both\\.sock$'] } } } });
    for (const user of [[], ['-u', '1234:1234']]) {
      const r = await runCli(
        [
          'container',
          '-t',
          `docker/${target.name}`,
          '-f',
          cfg,
          '--',
          'docker',
          'run',
          '--rm',
          ...user,
          image,
          'python3',
          '-c',
          CLIENT,
          '/run/tgt/app.sock',
          deep,
          '/run/tgt/missing.sock',
          // Matches no pattern: stays in the local container, where nothing listens.
          '/tmp/nothing.sock',
        ],
        { timeoutMs: 180_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        r.stdout.trim().split('\n'),
        [
          `/run/tgt/app.sock | target /run/tgt/app.sock | got:ping /run/tgt/app.sock | /run/tgt/app.sock`,
          `${deep} | target ${deep} | got:ping ${deep} | ${deep}`,
          '/run/tgt/missing.sock errno 2',
          '/tmp/nothing.sock errno 2',
        ],
        `user ${user.join(' ') || 'root'}: ${r.stderr}`,
      );
    }
  });
});
