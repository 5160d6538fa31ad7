import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { bindDestinations, parseDockerRun } from '../../src/local/container/docker-run.js';
import { commandLine } from '../../src/local/container/user-container.js';
import type { ApMethods, FileStat } from '../../common/protocol/agent/index.js';
import { SyncTooLarge, packSync, planSync, syncRoots, type FsAgent } from '../../src/fs/mounts.js';

/** An in-memory target file system answering the agent's fs.* methods, as the agent would. */
function fakeAgent(tree: Record<string, { dir?: true; data?: string; link?: string; mode?: number; uid?: number }>, mounts: string[]): FsAgent {
  const open = new Map<number, { path: string; sent: boolean }>();
  let next = 1;
  const stat = (p: string): FileStat => {
    const n = tree[p];
    if (!n) throw Object.assign(new Error(`${p}: ENOENT`), { code: 'ENOENT' });
    const type = n.dir ? 0o040000 : n.link !== undefined ? 0o120000 : 0o100000;
    const size = n.data ? Buffer.byteLength(n.data) : 0;
    return {
      dev: 1,
      ino: 1,
      mode: type | (n.mode ?? 0o644),
      nlink: 1,
      uid: n.uid ?? 0,
      gid: 0,
      rdev: 0,
      size,
      blksize: 4096,
      blocks: 0,
      atimeSec: 0,
      atimeNsec: 0,
      mtimeSec: 1_700_000_000,
      mtimeNsec: 0,
      ctimeSec: 0,
      ctimeNsec: 0,
    };
  };
  const handlers: { [M in keyof ApMethods]?: (p: ApMethods[M]['params']) => ApMethods[M]['result'] } = {
    'fs.mounts': () => ({ mounts }),
    'fs.stat': (p) => ({ stat: stat(p.path) }),
    'fs.readlink': (p) => ({ target: tree[p.path]!.link! }),
    'fs.open': (p) => {
      const fd = next++;
      open.set(fd, { path: p.path, sent: false });
      return { fd, stat: stat(p.path) };
    },
    'fs.readdir': (p) => {
      const f = open.get(p.fd)!;
      if (f.sent) return { entries: [] };
      f.sent = true;
      const prefix = `${f.path}/`;
      const names = Object.keys(tree).filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes('/'));
      return { entries: names.map((k) => ({ name: k.slice(prefix.length), type: 0, ino: 0 })) };
    },
    'fs.read': (p) => {
      const data = Buffer.from(tree[open.get(p.fd)!.path]!.data ?? '');
      return { data: data.subarray(p.offset, p.offset + p.len) };
    },
    'fs.close': (p) => {
      open.delete(p.fd);
      return {};
    },
  };
  return {
    request: async (method, params) => (handlers[method] as (p: unknown) => never)(params),
  };
}

async function untar(stream: PassThrough): Promise<Array<{ name: string; type: string; mode: number; uid: number; linkname?: string | null; body: string }>> {
  const out: Array<{ name: string; type: string; mode: number; uid: number; linkname?: string | null; body: string }> = [];
  const extract = tar.extract();
  extract.on('entry', (h, s, next) => {
    let body = '';
    s.on('data', (d: unknown) => (body += String(d)));
    s.on('end', () => {
      out.push({ name: h.name, type: h.type ?? '', mode: h.mode ?? 0, uid: h.uid ?? 0, linkname: h.linkname, body });
      next();
    });
  });
  const done = new Promise<void>((resolve) => extract.on('finish', () => resolve()));
  stream.pipe(extract);
  await done;
  return out;
}

describe('mounted-file sync (container mode)', () => {
  it("copies data mounts only: not pseudo file systems, not Docker's per-container files, not what a user -v covers", () => {
    const mounts = [
      '/',
      '/proc',
      '/proc/bus',
      '/sys/fs/cgroup',
      '/dev/shm',
      '/etc/hosts',
      '/etc/resolv.conf',
      '/etc/hostname',
      '/data/shared',
      '/data/shared/inner',
      '/srv/bind/',
      '/opt/mine/x',
    ];
    assert.deepEqual(syncRoots(mounts, []), ['/data/shared', '/opt/mine/x', '/srv/bind']);
    assert.deepEqual(syncRoots(mounts, ['/opt/mine', '/srv/bind']), ['/data/shared']);
    assert.deepEqual(syncRoots(['/data'], ['/data/x']), ['/data'], 'a user mount below a synced root only trims that root (see planSync)');
  });

  it('streams directories, files (with mode and owner) and symlinks as tar, leaving out what the user mounts', async () => {
    const agent = fakeAgent(
      {
        '/data': { dir: true },
        '/data/settings.json': { data: '{"a":1}', mode: 0o640, uid: 1234 },
        '/data/sub': { dir: true },
        '/data/sub/big.bin': { data: 'x'.repeat(1_200_000) },
        '/data/link': { link: 'sub/big.bin' },
        '/data/mine': { dir: true },
        '/data/mine/secret': { data: 'no' },
      },
      ['/', '/proc', '/data'],
    );
    const plan = await planSync(agent, { maxBytes: 10_000_000, exclude: ['/data/mine'] });
    assert.equal(plan.bytes, 7 + 1_200_000);
    const stream = new PassThrough();
    const [entries] = await Promise.all([untar(stream), packSync(agent, plan, stream)]);
    assert.deepEqual(
      entries.map((e) => [e.name, e.type, e.mode.toString(8), e.uid, e.linkname ?? '', e.body.length]),
      [
        ['data', 'directory', '644', 0, '', 0],
        ['data/link', 'symlink', '644', 0, 'sub/big.bin', 0],
        ['data/settings.json', 'file', '640', 1234, '', 7],
        ['data/sub', 'directory', '644', 0, '', 0],
        ['data/sub/big.bin', 'file', '644', 0, '', 1_200_000],
      ],
    );
    assert.equal(entries.find((e) => e.name === 'data/settings.json')!.body, '{"a":1}');
  });

  it('stops at the size limit before anything is copied, naming the mount', async () => {
    const agent = fakeAgent({ '/data': { dir: true }, '/data/a': { data: 'x'.repeat(100) }, '/data/b': { data: 'y'.repeat(100) } }, ['/data']);
    await assert.rejects(
      planSync(agent, { maxBytes: 150, exclude: [] }),
      (e: SyncTooLarge) => e instanceof SyncTooLarge && e.where === '/data' && e.bytes === 200,
    );
  });

  it("the user's -v destinations, and docker run's command rules that mirrord-init runs", () => {
    assert.deepEqual(bindDestinations(['/a:/b:ro', 'vol:/data/', '/anon', 'name:/x:rw,z']), ['/b', '/data', '/anon', '/x']);
    const img = { Entrypoint: ['/entry'], Cmd: ['default'] };
    assert.deepEqual(commandLine(parseDockerRun(['docker', 'run', 'i']), img), ['/entry', 'default']);
    assert.deepEqual(commandLine(parseDockerRun(['docker', 'run', 'i', 'mine']), img), ['/entry', 'mine']);
    assert.deepEqual(commandLine(parseDockerRun(['docker', 'run', '--entrypoint', 'sh', 'i']), img), ['sh'], '--entrypoint drops the image CMD');
    assert.deepEqual(commandLine(parseDockerRun(['docker', 'run', '--entrypoint', '', 'i', 'ls']), img), ['ls']);
    assert.deepEqual(commandLine(parseDockerRun(['docker', 'run', 'i']), { Entrypoint: null, Cmd: ['bash'] }), ['bash']);
  });
});
