/**
 * feature.network.outgoing.unix_streams, the parts that need no Docker: the config shapes, the
 * pattern matching the intproxy applies, and the agent's connect inside a root directory (symlinks
 * resolved under it; a path too long for sun_path reached through an O_PATH descriptor).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { connectUnixInRoot } from '../../agent/src/unix-stream.js';
import { validateConfig } from '../../src/config/load.js';
import { resolveFeatures } from '../../src/config/schema.js';
import { UnixStreamPatterns } from '../../src/intproxy/outgoing.js';

const patternsOf = (v: unknown) => resolveFeatures(validateConfig({ feature: { network: { outgoing: { unix_streams: v } } } })).outgoing.unix_streams;

describe('unix_streams config', () => {
  it('takes a string or a list, as mirrord does', () => {
    assert.deepEqual(patternsOf('/run/app\\.sock'), ['/run/app\\.sock']);
    assert.deepEqual(patternsOf(['a', '^/b$']), ['a', '^/b$']);
    assert.deepEqual(patternsOf([]), []);
    assert.equal(resolveFeatures(validateConfig({})).outgoing.unix_streams, undefined);
  });

  it('refuses a pattern that does not compile, naming it', () => {
    assert.throws(() => validateConfig({ feature: { network: { outgoing: { unix_streams: ['ok', '[bad'] } } } }), /invalid regex "\[bad"/);
    assert.throws(() => validateConfig({ feature: { network: { outgoing: { unix_streams: 7 } } } }));
  });
});

describe('UnixStreamPatterns', () => {
  it('searches anywhere in the path unless anchored', () => {
    const p = new UnixStreamPatterns(['docker\\.sock', '^/run/app/[^/]+\\.sock$']);
    assert.equal(p.matches('/var/run/docker.sock'), true);
    assert.equal(p.matches('/tmp/docker.sock.bak'), true);
    assert.equal(p.matches('/run/app/a.sock'), true);
    assert.equal(p.matches('/run/app/sub/a.sock'), false);
    assert.equal(p.matches('/x/run/app/a.sock'), false);
    assert.equal(p.matches('/run/dockerXsock'), false);
  });

  it('is case-sensitive, accepts Rust named groups, and matches nothing when empty', () => {
    const p = new UnixStreamPatterns(['^/run/(?P<svc>[a-z]+)\\.sock$']);
    assert.equal(p.matches('/run/db.sock'), true);
    assert.equal(p.matches('/run/DB.sock'), false);
    assert.equal(new UnixStreamPatterns([]).matches('/run/db.sock'), false);
    assert.equal(new UnixStreamPatterns().empty, true);
  });
});

describe('connectUnixInRoot (agent)', () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'mirrord-unix-root-'));
  // A root whose host paths are longer than sun_path allows (108 bytes).
  const root = path.join(base, 'r'.repeat(80));
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    rmSync(base, { recursive: true, force: true });
  });

  const serve = (at: string, greeting: string) =>
    new Promise<void>((resolve) => {
      const s = net.createServer((c) => c.end(greeting));
      servers.push(s);
      // Bound through a short relative path: the full host path does not fit in sun_path.
      const cwd = process.cwd();
      process.chdir(path.dirname(at));
      s.listen(path.basename(at), () => {
        process.chdir(cwd);
        resolve();
      });
    });

  const read = (s: net.Socket) =>
    new Promise<string>((resolve, reject) => {
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('end', () => {
        s.end(); // allowHalfOpen: our side closes when we say so
        resolve(out);
      });
      s.on('error', reject);
    });

  it('reaches a socket whose host path exceeds sun_path, and follows absolute symlinks under the root', async () => {
    mkdirSync(path.join(root, 'run/app'), { recursive: true });
    await serve(path.join(root, 'run/app/s.sock'), 'hi');
    assert.ok(Buffer.byteLength(path.join(root, 'run/app/s.sock')) > 108);
    assert.equal(await read(await connectUnixInRoot(root, '/run/app/s.sock')), 'hi');
    // /var/run -> /run inside the root, not the host's /run.
    mkdirSync(path.join(root, 'var'), { recursive: true });
    symlinkSync('/run', path.join(root, 'var/run'));
    assert.equal(await read(await connectUnixInRoot(root, '/var/run/app/s.sock')), 'hi');
  });

  it('fails with the kernel codes: ENOENT (no file, no directory), ECONNREFUSED (not a socket)', async () => {
    writeFileSync(path.join(root, 'run/app/plain'), '');
    await assert.rejects(connectUnixInRoot(root, '/run/app/none.sock'), { code: 'ENOENT' });
    await assert.rejects(connectUnixInRoot(root, '/run/nodir/x.sock'), { code: 'ENOENT' });
    await assert.rejects(connectUnixInRoot(root, '/run/app/plain'), { code: 'ECONNREFUSED' });
  });
});
