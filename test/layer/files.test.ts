/**
 * The layer tier for remote files: C test programs (layer/tests/t_files.c), cat, python3 and node
 * under the real layer, against the real intproxy and the real agent file service rooted at a
 * temporary "target root" (test/layer/files-harness.ts). Files under /srv exist only there.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { buildLayer, cTest, describeRun, lines, realPython, run } from './harness.js';
import { startFsFixture, type FsFixture } from './files-harness.js';

const CONTENT = 'hello remote\nsecond line\nthird line\n';
const HOST_MARKER = `/tmp/mirrord-host-marker-${process.pid}`;
let fx: FsFixture | undefined;
let python: string;

before(() => {
  buildLayer();
  python = realPython();
  writeFileSync(HOST_MARKER, 'HOST-MARKER-MUST-NOT-BE-READ\n');
});
after(() => rmSync(HOST_MARKER, { force: true }));
afterEach(async () => {
  try {
    // A write helper (exec'd writers) lets go of its file a moment after the program exits.
    for (let i = 0; i < 50 && fx && fx.files.openCount > 0; i++) await new Promise((r) => setTimeout(r, 100));
    if (fx) assert.equal(fx.files.openCount, 0, 'every remote descriptor closed when the programs ended');
  } finally {
    await fx?.stop();
    fx = undefined;
  }
});

function populate(root: string): void {
  mkdirSync(path.join(root, 'srv/dir/sub'), { recursive: true });
  writeFileSync(path.join(root, 'srv/data.txt'), CONTENT);
  writeFileSync(path.join(root, 'srv/dir/a.txt'), 'a');
  writeFileSync(path.join(root, 'srv/dir/b.txt'), 'b');
  writeFileSync(path.join(root, 'srv/big.txt'), Array.from({ length: 10_000 }, (_, i) => `line ${i}`).join('\n') + '\n');
  symlinkSync('data.txt', path.join(root, 'srv/link'));
  symlinkSync('a', path.join(root, 'srv/one'));
  symlinkSync('/', path.join(root, 'srv/to-root'));
  symlinkSync('../../../../../../../../tmp', path.join(root, 'srv/up-tmp'));
  symlinkSync(`../../../../../../..${HOST_MARKER}`, path.join(root, 'srv/up-marker'));
  symlinkSync(HOST_MARKER, path.join(root, 'srv/abs-marker'));
  mkdirSync(path.join(root, 'tmp'), { recursive: true });
}

async function start(fs: Record<string, unknown> = {}, mounts: string[] = []): Promise<FsFixture> {
  fx = await startFsFixture(fs, mounts);
  populate(fx.root);
  return fx;
}

async function runIn(f: FsFixture, cmd: string, args: string[], extra: Record<string, string> = {}) {
  const r = await run(cmd, args, await f.env(extra));
  assert.equal(r.stderr, '', `the layer must be silent\n${describeRun(r)}`);
  return r;
}

describe('remote files: C program', () => {
  it('open, fstat, read, lseek, pread, readv, dup shares the offset, fcntl F_DUPFD, poll, fopen', async () => {
    const f = await start();
    assert.ok(!existsSync('/srv/data.txt'), 'the file must not exist locally');
    const r = await runIn(f, cTest('t_files'), ['read', '/srv/data.txt']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      `fstat=0 size=${CONTENT.length} reg=1`,
      'read=5 [hello]',
      'lseek_cur=5',
      `lseek_end=${CONTENT.length}`,
      'pread=3 [ell]',
      'readv=5 [he|llo]',
      'dup_read=2 [ r]',
      'fcntl_dupfd=1 getfd=1',
      'poll=1 revents_in=1',
      'after_close_dup_read=2 [he]',
      'fopen=1 fileno_ok=1',
      'first_line=hello remote',
    ]);
  });

  it("mmap of a remote file maps its content (C, and python3's mmap module)", async () => {
    const f = await start();
    const r = await runIn(f, cTest('t_files'), ['mmap', '/srv/data.txt']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), ['mmap_first_line=hello remote', 'mmap_last_byte=10']);
    const py = await runIn(f, python, [
      '-c',
      "import mmap; f = open('/srv/big.txt', 'rb'); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); print(len(m), m[-10:].decode().strip())",
    ]);
    assert.equal(py.code, 0, describeRun(py));
    assert.equal(py.stdout.trim(), `${readFileSync(path.join(f.root, 'srv/big.txt')).length} line 9999`);
  });

  it('reads 10,000 lines with a handful of agent reads (read-ahead), not one per line', async () => {
    const f = await start();
    const r = await runIn(f, cTest('t_files'), ['lines', '/srv/big.txt']);
    assert.deepEqual(lines(r.stdout), ['lines=10000 last=line 9999']);
    const reads = f.calls.filter((c) => c === 'fs.read').length;
    assert.ok(reads <= 3, `agent reads: ${reads}`);
  });

  it('directories: opendir/readdir with . and .., dirfd + fstat', async () => {
    const f = await start();
    const r = await runIn(f, cTest('t_files'), ['dir', '/srv/dir']);
    assert.deepEqual(lines(r.stdout), ['dots=2 entries=a.txt,b.txt,sub', 'dirfd_fstat=0 isdir=1']);
  });

  it('stat, lstat, access and readlink of a remote symlink', async () => {
    const f = await start();
    const r = await runIn(f, cTest('t_files'), ['stat', '/srv/link']);
    assert.deepEqual(lines(r.stdout), [`stat=0 size=${CONTENT.length}`, 'lstat=0 link=1', 'access=0', 'readlink=data.txt']);
  });

  it('readlink of a remote symlink whose target is one byte long, and into a one-byte buffer', async () => {
    // A length of 1 once meant "not ours": the hook then asked the local file system (ENOENT).
    const f = await start();
    const r = await runIn(f, cTest('t_files'), ['readlink', '/srv/one', '/srv/link']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [
      'readlink=1 [a]',
      'readlinkat=1 [a]',
      'readlink_1=1 [a]',
      'readlink=8 [data.txt]',
      'readlinkat=8 [data.txt]',
      'readlink_1=1 [d]',
    ]);
    const py = await runIn(f, python, ['-c', "import os; print(os.readlink('/srv/one'), os.readlink('/srv/link'))"]);
    assert.equal(py.code, 0, describeRun(py));
    assert.equal(py.stdout, 'a data.txt\n');
  });

  it('symlinks to / and ../../.., and absolute symlinks, never reach a host file', async () => {
    const f = await start();
    const r = await runIn(f, cTest('t_files'), [
      'open',
      `/srv/to-root${HOST_MARKER}`,
      `/srv/up-tmp/${path.basename(HOST_MARKER)}`,
      '/srv/up-marker',
      '/srv/abs-marker',
      `/srv/../../../..${HOST_MARKER.replace('/tmp', '/srv/up-tmp')}`,
    ]);
    assert.ok(!r.stdout.includes('HOST-MARKER'), describeRun(r));
    assert.deepEqual(lines(r.stdout), ['open=ENOENT', 'open=ENOENT', 'open=ENOENT', 'open=ENOENT', 'open=ENOENT']);
    // The same name placed inside the target root is what they do reach.
    writeFileSync(path.join(f.root, HOST_MARKER.slice(1)), 'inside-target\n');
    const r2 = await runIn(f, cTest('t_files'), ['open', `/srv/to-root${HOST_MARKER}`, '/srv/up-marker', '/srv/abs-marker']);
    assert.deepEqual(lines(r2.stdout), Array(3).fill('open=ok read=14 [inside-target]'));
  });

  it('read mode: writing stays local; write mode: creat/write/mkdir/rename/unlink/rmdir in the target', async () => {
    let f = await start({ mode: 'write' });
    const r = await runIn(f, cTest('t_files'), ['write', '/srv/out.txt']);
    assert.deepEqual(lines(r.stdout), ['write=2', 'close=0', 'mkdir=0', 'rename=0', 'unlink=0', 'rmdir=0']);
    const r2 = await runIn(f, 'sh', ['-c', 'echo written-remotely > /srv/out2.txt']);
    assert.equal(r2.code, 0, describeRun(r2));
    assert.equal(readFileSync(path.join(f.root, 'srv/out2.txt'), 'utf8'), 'written-remotely\n');
    await f.stop();
    fx = undefined;
    f = await start({ mode: 'read' });
    const local = `/srv/mirrord-layer-test-${process.pid}.txt`;
    try {
      const r3 = await runIn(f, 'sh', ['-c', `echo x > ${local}; echo rc=$?; head -1 /srv/data.txt`]);
      assert.deepEqual(lines(r3.stdout), ['rc=0', 'hello remote'], describeRun(r3));
      assert.ok(!existsSync(path.join(f.root, local)), 'read mode must not create files in the target');
      assert.equal(readFileSync(local, 'utf8'), 'x\n', 'read mode writes locally');
    } finally {
      rmSync(local, { force: true });
    }
  });

  it('not_found and local rules', async () => {
    const f = await start({ not_found: ['^/srv/dir/a'], local: ['\\.local$'] });
    writeFileSync(path.join(f.root, 'srv/x.local'), 'remote copy');
    const r = await runIn(f, cTest('t_files'), ['open', '/srv/dir/a.txt', '/srv/dir/b.txt', '/srv/x.local']);
    assert.deepEqual(lines(r.stdout), ['open=ENOENT', 'open=ok read=1 [b]', 'open=ENOENT']);
  });

  it('a mount point under /etc is remote though /etc stays local', async () => {
    const f = await start({}, ['/', '/proc', '/etc/app', '/etc/hostname']);
    mkdirSync(path.join(f.root, 'etc/app'), { recursive: true });
    writeFileSync(path.join(f.root, 'etc/app/config.ini'), 'remote-config');
    writeFileSync(path.join(f.root, 'etc/passwd'), 'remote-passwd');
    const r = await runIn(f, cTest('t_files'), ['open', '/etc/app/config.ini']);
    assert.deepEqual(lines(r.stdout), ['open=ok read=13 [remote-config]']);
    const r2 = await runIn(f, 'head', ['-c', '5', '/etc/passwd']);
    assert.equal(r2.stdout, 'root:', 'the local /etc/passwd');
  });
});

describe('remote files: exec and children', () => {
  it("a remote file as the stdin of an exec'd program (sh redirection, python subprocess)", async () => {
    const f = await start();
    const r = await runIn(f, 'sh', ['-c', 'cat < /srv/data.txt; wc -l < /srv/data.txt']);
    assert.deepEqual(lines(r.stdout), [...lines(CONTENT), '3'], describeRun(r));
    const r2 = await runIn(f, python, ['-c', "import subprocess; subprocess.run(['head', '-1'], stdin=open('/srv/data.txt'))"]);
    assert.equal(r2.stdout, 'hello remote\n', describeRun(r2));
  });

  it("write mode: an exec'd program writing to a remote file (through the helper)", async () => {
    const f = await start({ mode: 'write' });
    const r = await runIn(f, 'sh', ['-c', 'printf "from-date\\n" | cat > /srv/exec-out.txt']);
    assert.equal(r.code, 0, describeRun(r));
    const file = path.join(f.root, 'srv/exec-out.txt');
    for (let i = 0; i < 50 && !(existsSync(file) && readFileSync(file, 'utf8')); i++) await new Promise((res) => setTimeout(res, 100));
    assert.equal(readFileSync(file, 'utf8'), 'from-date\n');
  });

  it('a forked child reads the remote file its parent opened', async () => {
    const f = await start();
    const r = await runIn(f, python, [
      '-c',
      "import os\nf=open('/srv/data.txt')\npid=os.fork()\nif pid==0:\n  print('child', f.readline().strip()); os._exit(0)\nos.waitpid(pid,0); print('parent', f.readline().strip())",
    ]);
    assert.deepEqual(lines(r.stdout), ['child hello remote', 'parent hello remote'], describeRun(r));
  });
});

describe('remote files: real programs', () => {
  it('cat reads a remote file', async () => {
    const f = await start();
    const r = await runIn(f, 'cat', ['/srv/data.txt']);
    assert.equal(r.stdout, CONTENT, describeRun(r));
  });

  it('python3: open().read(), os.listdir, os.stat', async () => {
    const f = await start();
    const r = await runIn(f, python, [
      '-c',
      "import os; print(repr(open('/srv/data.txt').read())); print(sorted(os.listdir('/srv/dir'))); print(os.stat('/srv/data.txt').st_size)",
    ]);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [JSON.stringify(CONTENT).replace(/"/g, "'"), "['a.txt', 'b.txt', 'sub']", String(CONTENT.length)]);
  });

  it('node: fs.readFileSync, fs.readdirSync, fs.promises', async () => {
    const f = await start();
    const script =
      "const fs=require('fs');console.log(JSON.stringify(fs.readFileSync('/srv/data.txt','utf8')));console.log(fs.readdirSync('/srv/dir').sort().join(','));" +
      "console.log(fs.statSync('/srv/data.txt').size, fs.existsSync('/srv/dir/a.txt'));" +
      "fs.promises.readFile('/srv/dir/a.txt','utf8').then(async (t)=>{console.log(t);console.log((await fs.promises.readdir('/srv/dir')).sort().join(','))})";
    const r = await runIn(f, process.execPath, ['-e', script]);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(lines(r.stdout), [JSON.stringify(CONTENT), 'a.txt,b.txt,sub', `${CONTENT.length} true`, 'a', 'a.txt,b.txt,sub']);
  });
});
