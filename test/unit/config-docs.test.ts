import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configDocs, configDocsPath, configKeys } from '../../src/config/write-docs.js';

test('docs/configuration.md is what src/config/write-docs.ts renders from the schema', () => {
  const committed = readFileSync(configDocsPath(), 'utf8');
  // Not assert.equal on the texts: a diff of two whole pages says less than the one thing to do.
  if (committed !== configDocs()) assert.fail('docs/configuration.md is stale: run npm run docs');
});

test('every config key has a description, a type and a row on the page', () => {
  const page = configDocs();
  const keys = configKeys();
  assert.ok(keys.length > 40, `only ${keys.length} keys found: the schema walk lost some`);
  for (const k of keys) {
    assert.ok(k.description && k.description.length > 0, `${k.path} has no .describe() text in src/config/schema.ts`);
    assert.notEqual(k.type, '', `${k.path} has no type`);
    assert.ok(page.includes(`| \`${k.path}\` |`), `${k.path} has no row in docs/configuration.md`);
  }
});

test('keys the README and the design promise are on the page, with their defaults', () => {
  const byPath = new Map(configKeys().map((k) => [k.path, k]));
  const expect: [string, string][] = [
    ['agent.ttl', '`1`'],
    ['agent.startup_timeout', '`60`'],
    ['agent.log_level', '`"warn"`'],
    ['agent.ephemeral', '`false`'],
    ['feature.network.incoming.mode', '`"mirror"`'],
    ['feature.network.outgoing.tcp', '`true`'],
    ['feature.network.dns.enabled', '`true`'],
    ['feature.fs.mode', '`"read"`'],
    ['container.capture', '`"off"`'],
    ['container.mounts.max_size', '`"100MiB"`'],
  ];
  for (const [p, d] of expect) assert.equal(byPath.get(p)?.default, d, p);
  for (const p of [
    'target.namespace',
    'feature.network.incoming.http_filter.header_filter',
    'feature.fs.not_found',
    'feature.env.env_file',
    'skip_processes',
  ]) {
    assert.ok(byPath.has(p), p);
  }
});
