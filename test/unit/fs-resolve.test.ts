/** Safe path resolution of the agent (agent/src/files-resolve.ts) on a real directory tree. */
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveInRoot } from '../../agent/src/files-resolve.js';

let root: string;
before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mirrord-resolve-'));
  mkdirSync(path.join(root, 'srv/a/b'), { recursive: true });
  mkdirSync(path.join(root, 'etc'));
  writeFileSync(path.join(root, 'etc/shadow'), 'target shadow');
  symlinkSync('/', path.join(root, 'srv/root'));
  symlinkSync('../../../../etc/shadow', path.join(root, 'srv/a/shadow'));
  symlinkSync('/etc', path.join(root, 'srv/etc'));
  symlinkSync('loop2', path.join(root, 'srv/loop1'));
  symlinkSync('loop1', path.join(root, 'srv/loop2'));
  writeFileSync(path.join(root, 'srv/file'), 'x');
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  it('clamps .. at the root', async () => {
    assert.equal((await resolveInRoot(root, '/../../../etc/shadow', true)).host, `${root}/etc/shadow`);
    assert.equal((await resolveInRoot(root, '/srv/a/b/../../../../../etc/shadow', true)).inside, '/etc/shadow');
  });
  it('absolute symlinks restart from the target root, relative ones clamp', async () => {
    assert.equal((await resolveInRoot(root, '/srv/root/etc/shadow', true)).host, `${root}/etc/shadow`);
    assert.equal((await resolveInRoot(root, '/srv/a/shadow', true)).host, `${root}/etc/shadow`);
    assert.equal((await resolveInRoot(root, '/srv/etc/shadow', true)).host, `${root}/etc/shadow`);
  });
  it('keeps a final symlink when not following it', async () => {
    assert.equal((await resolveInRoot(root, '/srv/a/shadow', false)).host, `${root}/srv/a/shadow`);
  });
  it('reports a missing last component, refuses a missing directory, loops and files used as directories', async () => {
    assert.equal((await resolveInRoot(root, '/srv/new.txt', true)).missing, true);
    await assert.rejects(resolveInRoot(root, '/nope/x', true), { code: 'ENOENT' });
    await assert.rejects(resolveInRoot(root, '/srv/loop1', true), { code: 'ELOOP' });
    await assert.rejects(resolveInRoot(root, '/srv/file/x', true), { code: 'ENOTDIR' });
    await assert.rejects(resolveInRoot(root, 'relative', true), { code: 'EINVAL' });
  });
  it('never yields a path outside the root', async () => {
    for (const p of ['/..', '/srv/root/..', '/srv/root/../..', '/srv/a/shadow/..', '/srv/etc/../../..']) {
      const r = await resolveInRoot(root, p, true).catch(() => undefined);
      if (r) assert.ok(r.host === root || r.host.startsWith(`${root}/`), `${p} -> ${r.host}`);
    }
  });
});
