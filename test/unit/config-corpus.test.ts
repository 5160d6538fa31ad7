import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { MirrordError } from '../../common/errors.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { noticesFor } from '../../src/config/notices.js';
import { resolveFeatures, skippedProcesses } from '../../src/config/schema.js';
import { formatTarget, targetFrom } from '../../src/target.js';

/**
 * The corpus of issue 17: configs written for these tests in mirrord's shapes (JSON, YAML, TOML,
 * test/fixtures/config-corpus/), each loaded the way `mirrord exec -f` loads it and checked against
 * test/fixtures/config-corpus/expected.json: for an accepted file, the resolved values it names
 * (dotted paths into the view below; null means "unset") and exactly the keys verify-config names
 * as having no effect; for a refused one, the start of its one-line problem (exit 78).
 */

const DIR = fileURLToPath(new URL('../fixtures/config-corpus/', import.meta.url));
const ENV = { CORPUS_NS: 'shop', CORPUS_KUBE: '/srv/kube', HOME: '/home/corpus' };

interface Expectation {
  resolved?: Record<string, unknown>;
  notices?: string[];
  error?: string;
}

const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, Expectation>;
const files = readdirSync(DIR)
  .filter((f) => f !== 'expected.json')
  .sort();

/** What a session would be given: the target, its features, the agent, the processes skipped. */
function view(config: Awaited<ReturnType<typeof loadConfig>>['config']): Record<string, unknown> {
  let target: string;
  let namespace: string | undefined;
  try {
    const spec = targetFrom(config);
    target = formatTarget(spec);
    namespace = 'namespace' in spec ? spec.namespace : undefined;
  } catch (err) {
    if (!(err instanceof MirrordError)) throw err;
    target = `error: ${err.message}`;
  }
  return {
    target,
    namespace,
    features: resolveFeatures(config),
    agent: config.agent,
    container: config.container,
    internal_proxy: config.internal_proxy,
    external_proxy: config.external_proxy,
    key: config.key,
    kubeconfig: config.kubeconfig,
    skip: skippedProcesses(config) ?? [],
  };
}

function at(v: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), v);
}

describe('config corpus', () => {
  it('has at least 60 configs, 20 of each format, each with its expectation', () => {
    assert.ok(files.length >= 60, `${files.length} configs`);
    for (const ext of ['.json', '.yaml', '.toml']) assert.ok(files.filter((f) => f.endsWith(ext)).length >= 20, ext);
    assert.deepEqual(files, Object.keys(expected).sort());
  });

  for (const file of files) {
    it(file, async () => {
      const want = expected[file]!;
      const loading = loadConfig({ file: path.join(DIR, file), cwd: DIR, env: ENV });
      if (want.error) {
        await assert.rejects(loading, (e: ConfigError) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.code, 78);
          assert.equal(e.problems.length, 1, e.message);
          assert.ok(`${e.problems[0]!.path}: ${e.problems[0]!.message}`.startsWith(want.error!), e.message);
          return true;
        });
        return;
      }
      const { config, raw } = await loading;
      const v = view(config);
      for (const [p, value] of Object.entries(want.resolved ?? {})) {
        if (p === 'skip_contains') {
          for (const name of value as string[]) assert.ok((v.skip as string[]).includes(name), `skip has ${name}`);
        } else if (p === 'target' && typeof value === 'string' && value.startsWith('error: ')) {
          assert.ok(String(v.target).startsWith(value), `target: ${String(v.target)}`);
        } else {
          assert.deepEqual(at(v, p), value === null ? undefined : value, p);
        }
      }
      assert.deepEqual(
        noticesFor(raw)
          .map((n) => n.split(':')[0])
          .sort(),
        [...(want.notices ?? [])].sort(),
        'notices',
      );
    });
  }
});
