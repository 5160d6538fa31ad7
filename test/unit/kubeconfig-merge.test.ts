import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { expandKubeconfig } from '../../src/config/kubeconfig.js';
import { connectKube } from '../../src/platforms/kubernetes/client.js';

/** The kubeconfig key as a list merged like KUBECONFIG, and accept_invalid_certificates (issue 17, items 2/3). */

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-kubeconfig-'));
function file(name: string, o: { current?: string; clusters: Array<[string, string]>; contexts: Array<[string, string]> }): string {
  const f = path.join(dir, name);
  const lines = ['apiVersion: v1', 'kind: Config', ...(o.current ? [`current-context: ${o.current}`] : []), 'clusters:'];
  for (const [n, server] of o.clusters) lines.push(`- name: ${n}`, '  cluster:', `    server: ${server}`);
  lines.push('users:', '- name: u', '  user: {token: t}', 'contexts:');
  for (const [n, cluster] of o.contexts) lines.push(`- name: ${n}`, '  context:', `    cluster: ${cluster}`, '    user: u');
  writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

const a = file('a.yaml', { current: 'dev', clusters: [['dev', 'https://dev.example:6443']], contexts: [['dev', 'dev']] });
const b = file('b.yaml', {
  current: 'prod',
  clusters: [
    ['dev', 'https://shadowed.example:6443'],
    ['prod', 'https://prod.example:6443'],
  ],
  contexts: [['prod', 'prod']],
});

describe('kubeconfig list', () => {
  it('merges as KUBECONFIG: first definition and first current-context win, missing files are skipped', () => {
    const list = expandKubeconfig(`${a}:${path.join(dir, 'missing.yaml')}:${b}`);
    assert.equal(list, `${a}:${b}`);
    const kube = connectKube({ kubeconfig: list });
    assert.equal(kube.kc.getCurrentContext(), 'dev');
    assert.equal(kube.server, 'https://dev.example:6443');
    assert.deepEqual(
      kube.kc.getContexts().map((c) => c.name),
      ['dev', 'prod'],
    );
    const other = connectKube({ kubeconfig: list, context: 'prod' });
    assert.equal(other.server, 'https://prod.example:6443', 'a context from the second file is usable');
  });

  it('a list with no existing file names its first entry', () => {
    assert.throws(() => connectKube({ kubeconfig: expandKubeconfig(`${path.join(dir, 'none1')}:${path.join(dir, 'none2')}`) }), /none1 does not exist/);
  });

  it('accept_invalid_certificates skips TLS verification of the current cluster only', () => {
    const kube = connectKube({ kubeconfig: `${a}:${b}`, acceptInvalidCertificates: true });
    assert.equal(kube.kc.getCurrentCluster()?.skipTLSVerify, true);
    assert.notEqual(kube.kc.getCluster('prod')?.skipTLSVerify, true);
    assert.notEqual(connectKube({ kubeconfig: a }).kc.getCurrentCluster()?.skipTLSVerify, true);
  });
});
