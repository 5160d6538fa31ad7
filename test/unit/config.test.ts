import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { resolveFeatures } from '../../src/config/schema.js';
import { schemaText } from '../../src/config/write-schema.js';
import { flagOverrides } from '../../src/config/flags.js';

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'mirrord-cfg-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
    writeFileSync(path.join(d, name), text);
  }
  return d;
}

describe('config discovery', () => {
  it('finds .mirrord/mirrord.json first', async () => {
    const d = dir({ '.mirrord/mirrord.json': '{"target":"docker/a"}', 'mirrord.yaml': 'target: docker/b\n', 'package.json': '{}' });
    const { config, filepath } = await loadConfig({ cwd: d, env: {} });
    assert.equal(config.target, 'docker/a');
    assert.equal(filepath, path.join(d, '.mirrord/mirrord.json'));
  });
  it('reads yaml, toml and package.json#mirrord', async () => {
    assert.equal((await loadConfig({ cwd: dir({ 'mirrord.yaml': 'target: docker/y\n', 'package.json': '{}' }), env: {} })).config.target, 'docker/y');
    const toml = dir({ 'mirrord.toml': 'target = "docker/t"\n[feature.network.outgoing]\nignore_localhost = true\n', 'package.json': '{}' });
    const t = await loadConfig({ cwd: toml, env: {} });
    assert.equal(t.config.target, 'docker/t');
    assert.equal(resolveFeatures(t.config).outgoing.ignore_localhost, true);
    const pkg = dir({ 'package.json': '{"name":"x","mirrord":{"target":"docker/p"}}' });
    assert.equal((await loadConfig({ cwd: pkg, env: {} })).config.target, 'docker/p');
  });
  it('honours -f, then MIRRORD_CONFIG_FILE', async () => {
    const d = dir({ 'a.json': '{"target":"docker/a"}', 'b.json': '{"target":"docker/b"}', 'package.json': '{}' });
    assert.equal((await loadConfig({ cwd: d, file: 'a.json', env: { MIRRORD_CONFIG_FILE: path.join(d, 'b.json') } })).config.target, 'docker/a');
    assert.equal((await loadConfig({ cwd: d, env: { MIRRORD_CONFIG_FILE: path.join(d, 'b.json') } })).config.target, 'docker/b');
    await assert.rejects(loadConfig({ cwd: d, file: 'missing.json', env: {} }), /does not exist/);
  });
  it('no file gives every default (with a target from -t)', async () => {
    const { config, filepath } = await loadConfig({ cwd: dir({ 'package.json': '{}' }), env: {}, overrides: flagOverrides({ target: 'docker/x' }) });
    assert.equal(filepath, undefined);
    const f = resolveFeatures(config);
    assert.deepEqual([f.outgoing.tcp, f.outgoing.ignore_localhost, f.dns.enabled, f.incoming.mode, f.fs.mode], [true, false, true, 'mirror', 'read']);
    assert.equal(config.agent.startup_timeout, 60);
  });
});

describe('config validation', () => {
  it('reports every problem at once, by path', async () => {
    const d = dir({
      'mirrord.json': JSON.stringify({ feature: { fs: { mode: 'readd' }, network: { outgoing: { tcp: 'yes' } } }, agent: { ttl: -1 }, bogus: 1 }),
      'package.json': '{}',
    });
    const err = await loadConfig({ cwd: d, env: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError);
    const paths = err.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, ['agent.ttl', 'bogus', 'feature.fs.mode', 'feature.network.outgoing.tcp']);
    assert.match(err.message, /feature\.fs\.mode: expected one of read\|write\|local\|localwithoverrides/);
    assert.match(err.message, /bogus: unknown key/);
  });
  it('accepts mirrord shorthands and semicolon lists', async () => {
    const d = dir({
      'mirrord.json': JSON.stringify({
        target: 'docker/x',
        feature: { fs: 'write', network: { incoming: 'steal', dns: false, outgoing: { filter: { local: ['10.0.0.0/8'] } } }, env: { include: 'A;B_*' } },
      }),
      'package.json': '{}',
    });
    const f = resolveFeatures((await loadConfig({ cwd: d, env: {} })).config);
    assert.equal(f.fs.mode, 'write');
    assert.equal(f.incoming.mode, 'steal');
    assert.equal(f.dns.enabled, false);
    assert.deepEqual(f.env.include, ['A', 'B_*']);
  });
  it('rejects both remote and local filters', async () => {
    const d = dir({
      'mirrord.json': JSON.stringify({ feature: { network: { outgoing: { filter: { local: ['a'], remote: ['b'] } } } } }),
      'package.json': '{}',
    });
    await assert.rejects(loadConfig({ cwd: d, env: {} }), /feature\.network\.outgoing\.filter.*not both/);
  });
  it('flags override the file and are validated the same way', async () => {
    const d = dir({
      'mirrord.json': JSON.stringify({ target: 'docker/file', feature: { network: { dns: false, incoming: 'mirror' } } }),
      'package.json': '{}',
    });
    const { config } = await loadConfig({
      cwd: d,
      env: {},
      overrides: flagOverrides({ target: 'docker/flag', steal: true, outgoing: false, includeEnv: 'X;Y' }),
    });
    const f = resolveFeatures(config);
    assert.equal(config.target, 'docker/flag');
    assert.equal(f.incoming.mode, 'steal');
    assert.equal(f.outgoing.tcp, false);
    assert.equal(f.dns.enabled, false);
    assert.deepEqual(f.env.include, ['X', 'Y']);
    await assert.rejects(loadConfig({ cwd: d, env: {}, overrides: flagOverrides({ fsMode: 'nope' }) }), /feature\.fs\.mode/);
  });
  it('the shipped JSON Schema is the one generated from code', () => {
    const shipped = readFileSync(new URL('../../schema/mirrord.schema.json', import.meta.url), 'utf8');
    assert.equal(shipped, schemaText(), 'run `npm run build` and commit schema/mirrord.schema.json');
  });
});
