/** The fs rules (src/fs/rules.ts): decision order, defaults, mount points, and the layer hints. */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FsRules, anchoredPrefix, normalizePath, type FsSettings } from '../../src/fs/rules.js';

const ctx = { mounts: ['/', '/proc', '/dev/shm', '/etc/app', '/data', '/etc/hostname'], cwd: '/home/dev/project', home: '/home/dev', exe: '/usr/bin/python3' };
const rules = (s: Partial<FsSettings> = {}) => new FsRules({ mode: 'read', ...s }, ctx);
const kind = (r: FsRules, p: string, a: 'read' | 'write' = 'read') => r.decide(p, a).kind;

describe('fs rules', () => {
  it('read mode: remote reads, local writes, runtime and own files local', () => {
    const r = rules();
    assert.equal(kind(r, '/srv/data.txt'), 'remote-ro');
    assert.equal(kind(r, '/srv/data.txt', 'write'), 'local');
    assert.equal(kind(r, '/home'), 'local', 'a parent of the home directory');
    assert.equal(kind(r, '/home/other'), 'remote-ro', 'but not its other children');
    for (const p of [
      '/usr/lib/python3.11/os.py',
      '/proc/self/maps',
      '/etc/passwd',
      '/home/dev/project/x.py',
      '/app/node_modules/x/index.js',
      '/opt/lib/libfoo.so.1',
      '/tmp/x',
    ]) {
      assert.equal(kind(r, p), 'local', p);
    }
  });

  it('/etc/resolv.conf, hosts, hostname and mount points are remote even under /etc', () => {
    const r = rules();
    for (const p of ['/etc/resolv.conf', '/etc/hosts', '/etc/hostname', '/etc/app', '/etc/app/config.ini', '/data/db/file'])
      assert.equal(kind(r, p), 'remote-ro', p);
    assert.equal(kind(r, '/etc/apple'), 'local', 'a sibling with a longer name is not under the mount');
    assert.equal(kind(r, '/dev/shm/x'), 'local', 'runtime mounts are not volumes');
  });

  it('write mode: remote reads and writes', () => {
    const r = rules({ mode: 'write' });
    assert.equal(kind(r, '/srv/out.txt', 'write'), 'remote-rw');
    assert.equal(kind(r, '/usr/bin/env', 'write'), 'local');
  });

  it('decision order: not_found, local, read_write, read_only, then mode and defaults', () => {
    const r = rules({ not_found: ['^/srv/secret'], local: ['\\.log$', '^/srv/secret'], read_write: ['^/usr/share/app/'], read_only: ['^/srv/ro/'] });
    assert.equal(kind(r, '/srv/secret/key'), 'not_found');
    assert.equal(kind(r, '/srv/x.log'), 'local');
    assert.equal(kind(r, '/usr/share/app/x', 'write'), 'remote-rw', 'a rule beats the local defaults');
    assert.equal(kind(r, '/srv/ro/x'), 'remote-ro');
    assert.equal(kind(r, '/srv/ro/x', 'write'), 'local');
  });

  it('local and localwithoverrides modes', () => {
    assert.equal(kind(rules({ mode: 'local', read_write: ['.*'] }), '/srv/x'), 'local');
    const o = rules({ mode: 'localwithoverrides', read_only: ['^/srv/only/'] });
    assert.equal(kind(o, '/srv/only/x'), 'remote-ro');
    assert.equal(kind(o, '/srv/other'), 'local');
    assert.equal(kind(o, '/etc/resolv.conf'), 'local');
  });

  it('anchoredPrefix', () => {
    assert.equal(anchoredPrefix('^/app/data'), '/app/data');
    assert.equal(anchoredPrefix('^/app/.*\\.json'), '/app/');
    assert.equal(anchoredPrefix('^/app\\.d/x'), '/app.d/x');
    assert.equal(anchoredPrefix('^/apps?/'), '/app');
    assert.equal(anchoredPrefix('\\.json$'), undefined);
  });

  it('layer hints are sound: a path under a local hint and outside every ask prefix is decided local', () => {
    const settings: FsSettings[] = [
      { mode: 'read' },
      { mode: 'write' },
      { mode: 'read', read_only: ['^/usr/share/app'], not_found: ['^/etc/secret'] },
      { mode: 'localwithoverrides', read_write: ['^/srv/'] },
      { mode: 'read', local: ['^/srv'] },
    ];
    const seg = fc.constantFrom(
      'usr',
      'dev',
      'home',
      'project',
      'dev',
      'etc',
      'srv',
      'share',
      'app',
      'hosts',
      'resolv.conf',
      'data',
      'proc',
      'home',
      'dev',
      'project',
      'secret',
      'x.so',
      'node_modules',
      '..',
      '.',
    );
    for (const s of settings) {
      const r = new FsRules(s, ctx);
      const h = r.layerHints();
      fc.assert(
        fc.property(fc.array(seg, { minLength: 1, maxLength: 5 }), fc.constantFrom<'read' | 'write'>('read', 'write'), (parts, access) => {
          const p = normalizePath(`/${parts.join('/')}`);
          const local =
            h.local.some((d) => (d.startsWith('=') ? p === d.slice(1) : d === '/' || p === d || p.startsWith(`${d}/`))) && !h.ask.some((a) => p.startsWith(a));
          if (local) assert.equal(r.decide(p, access).kind, 'local', `${JSON.stringify(s)} ${p}`);
        }),
      );
    }
    assert.deepEqual(new FsRules({ mode: 'local' }).layerHints(), { off: true, local: [], ask: [] });
    assert.deepEqual(
      new FsRules({ mode: 'read', read_only: ['\\.json$'] }, ctx).layerHints().local,
      [],
      'an unanchored rule makes the layer ask about everything',
    );
  });

  it('rejects an invalid regex with the key name', () => {
    assert.throws(() => rules({ local: ['('] }), /feature\.fs\.local: invalid regex/);
  });
});
