import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { MirrordError } from '../../common/errors.js';
import { kubeconfigFromSecret } from '../../src/devcontainer/kubeconfig.js';
import { daemonArgs, preloadMode } from '../../src/devcontainer/options.js';
import { editPreloadList } from '../../src/devcontainer/preload.js';
import { decodeSessionFile, encodeSessionFile, SESSION_FILE_MAGIC } from '../../src/devcontainer/session-file.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-devcontainer-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('the devcontainer session file', () => {
  it('is NUL-separated entries, magic first, values with newlines and = kept', () => {
    const buf = encodeSessionFile({
      settings: { MIRRORD_LAYER_ADDR: '127.0.0.1:4000', MIRRORD_SESSION: 'ab' },
      cliExe: '/usr/local/bin/mirrord',
      env: { A: 'x=y\nz', B: '' },
    });
    assert.deepEqual(buf.toString().split('\0'), [
      SESSION_FILE_MAGIC,
      'MIRRORD_LAYER_ADDR=127.0.0.1:4000',
      'MIRRORD_SESSION=ab',
      'mirrord.exe=/usr/local/bin/mirrord',
      'env.A=x=y\nz',
      'env.B=',
      '',
    ]);
    assert.deepEqual(decodeSessionFile(buf), {
      settings: { MIRRORD_LAYER_ADDR: '127.0.0.1:4000', MIRRORD_SESSION: 'ab' },
      cliExe: '/usr/local/bin/mirrord',
      env: { A: 'x=y\nz', B: '' },
    });
  });

  it('leaves out variables no environment can hold', () => {
    const c = decodeSessionFile(encodeSessionFile({ settings: {}, cliExe: '', env: { 'A=B': '1', C: 'nul\0inside', '': 'x', OK: '1' } }));
    assert.deepEqual(c?.env, { OK: '1' });
  });

  it('a file without the magic entry is not a session file', () => {
    assert.equal(decodeSessionFile(Buffer.from('MIRRORD_LAYER_ADDR=127.0.0.1:1\0')), undefined);
  });
});

describe('/etc/ld.so.preload edits', () => {
  const layer = '/usr/local/lib/mirrord/layer/build/libmirrord_layer.so';
  it('adds the layer once, first, keeping other entries', () => {
    assert.equal(editPreloadList('', layer, true), `${layer}\n`);
    assert.equal(editPreloadList('/lib/other.so\n', layer, true), `${layer}\n/lib/other.so\n`);
    assert.equal(editPreloadList(`${layer}\n/lib/other.so\n`, layer, true), `${layer}\n/lib/other.so\n`);
  });
  it('removes only the layer; an empty list becomes an empty file', () => {
    assert.equal(editPreloadList(`${layer}\n/lib/other.so\n`, layer, false), '/lib/other.so\n');
    assert.equal(editPreloadList(`${layer}\n`, layer, false), '');
  });
});

describe('options', () => {
  it('preload is all, shell or none; anything else is a usage error', () => {
    assert.equal(preloadMode({}), 'all');
    assert.equal(preloadMode({ preload: 'shell' }), 'shell');
    assert.throws(
      () => preloadMode({ preload: 'some' }),
      (e: unknown) => e instanceof MirrordError && e.code === 64,
    );
  });
  it("the daemon gets start's settings as flags", () => {
    assert.deepEqual(daemonArgs({ target: 'docker/web', configFile: '/w/mirrord.json', preload: 'shell', skip: 'a;b' }), [
      'devcontainer',
      'daemon',
      '--target',
      'docker/web',
      '--config-file',
      '/w/mirrord.json',
      '--preload',
      'shell',
      '--skip',
      'a;b',
    ]);
  });
});

describe('a kubeconfig from a secret', () => {
  const kubeconfig =
    'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "https://10.0.0.1:6443"}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n';
  it('base64 or plain: written with mode 0600', () => {
    for (const value of [Buffer.from(kubeconfig).toString('base64'), kubeconfig]) {
      const file = path.join(dir, 'kc');
      rmSync(file, { force: true });
      assert.equal(kubeconfigFromSecret('KC', { KC: value }, file), file);
      assert.equal(readFileSync(file, 'utf8'), kubeconfig);
      assert.equal(statSync(file).mode & 0o777, 0o600);
    }
  });
  it('unset, or not a kubeconfig: a config error naming the secret', () => {
    for (const env of [{}, { KC: Buffer.from('hello: world').toString('base64') }, { KC: '%%%not base64' }]) {
      assert.throws(
        () => kubeconfigFromSecret('KC', env, path.join(dir, 'kc2')),
        (e: unknown) => e instanceof MirrordError && e.code === 78 && e.message.includes('KC'),
      );
    }
  });
});
