import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { silentLogger } from '../../common/log.js';
import { runInit } from '../helpers/init.js';
import { loadConfig } from '../../src/config/load.js';
import {
  composeServiceNames,
  readTemplate,
  renderMirrordJson,
  renderUpFile,
  renderXMirrord,
  resolveTargets,
  schemaRef,
  type InitTarget,
} from '../../src/commands/init.js';
import { ExitCode, MirrordError } from '../../common/errors.js';

/** No engine here: only Kubernetes and targetless targets, which are checked as strings. */
const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'mirrord-init-'));

async function targets(...texts: string[]): Promise<InitTarget[]> {
  return resolveTargets(texts, undefined, silentLogger);
}

const init = runInit;

/** The mirrord-up.yaml shape (common, services.NAME.{target, ..., run}) as the format defines it. */
function assertUpShape(file: unknown): asserts file is { services: Record<string, Record<string, unknown>> } {
  assert.ok(file && typeof file === 'object');
  const top = file as Record<string, unknown>;
  assert.deepEqual(
    Object.keys(top).filter((k) => k !== 'common' && k !== 'services'),
    [],
  );
  const services = top.services as Record<string, Record<string, unknown>>;
  assert.ok(services && typeof services === 'object' && Object.keys(services).length > 0);
  const keys = ['target', 'env', 'default_mode', 'http_filter', 'ignore_ports', 'skip', 'context', 'run'];
  for (const [name, s] of Object.entries(services)) {
    assert.deepEqual(
      Object.keys(s).filter((k) => !keys.includes(k)),
      [],
      `service ${name} has unknown keys`,
    );
    const run = s.run as { type: string; command: unknown };
    assert.ok(run.type === 'exec' || run.type === 'container', `service ${name}: run.type`);
    assert.ok(Array.isArray(run.command) && run.command.length > 0 && run.command.every((c) => typeof c === 'string'), `service ${name}: run.command`);
    if (s.default_mode !== undefined) assert.ok(['split', 'replace', 'mirror'].includes(s.default_mode as string));
    const t = s.target;
    assert.ok(t === undefined || typeof t === 'string' || (typeof t === 'object' && t !== null && 'path' in t), `service ${name}: target`);
  }
}

describe('mirrord init: the templates', () => {
  it('templates/mirrord.json is a config loadConfig accepts', async () => {
    const d = tmp();
    writeFileSync(path.join(d, 'mirrord.json'), readTemplate('mirrord.json'));
    const { config } = await loadConfig({ cwd: d, env: {} });
    assert.equal(typeof config.target, 'string');
  });
  it('templates/mirrord-up.yaml and x-mirrord.yaml are the formats as they are', () => {
    const up: unknown = parseYaml(readTemplate('mirrord-up.yaml'));
    assertUpShape(up);
    const x = parseYaml(readTemplate('x-mirrord.yaml')) as { 'x-mirrord': unknown; services: Record<string, { 'x-mirrord': { target: string } }> };
    assert.ok(x['x-mirrord']);
    assert.equal(typeof x.services['my-app']!['x-mirrord'].target, 'string');
  });
  it('the only {{ }} expressions in the up template are ones mirrord renders', () => {
    const exprs = readTemplate('mirrord-up.yaml').match(/\{\{[^}]*\}\}/g) ?? [];
    assert.ok(exprs.length > 0);
    for (const e of exprs) assert.match(e, /^\{\{ (key|git_branch) \}\}$/);
  });
});

describe('mirrord init: rendering', () => {
  it('mirrord.json: $schema first, then the target; loadConfig accepts it', async () => {
    const [t] = await targets('deployment/api');
    const text = renderMirrordJson(readTemplate('mirrord.json'), { target: t!.value, schema: './node_modules/mirrord/schema/mirrord.schema.json' });
    const json = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json).slice(0, 2), ['$schema', 'target']);
    assert.equal(json.target, 'deployment/api');
    const d = tmp();
    writeFileSync(path.join(d, 'mirrord.json'), text);
    const { config } = await loadConfig({ cwd: d, env: {} });
    assert.equal(config.target, 'deployment/api');
    assert.equal(config.$schema, './node_modules/mirrord/schema/mirrord.schema.json');
  });
  it('mirrord.json: -n makes the target {path, namespace}; no -t leaves the target out', async () => {
    const [t] = await resolveTargets(['pod/p/container/c'], 'staging', silentLogger);
    const json = JSON.parse(renderMirrordJson(readTemplate('mirrord.json'), { target: t!.value, schema: 's' })) as { target: unknown };
    assert.deepEqual(json.target, { path: 'pod/p/container/c', namespace: 'staging' });
    const none = JSON.parse(renderMirrordJson(readTemplate('mirrord.json'), { schema: 's' })) as Record<string, unknown>;
    assert.equal('target' in none, false);
  });
  it('mirrord-up.yaml: one service per target, named after it, split with the filter in a comment', async () => {
    const ts = await targets('deployment/api', 'statefulset/db/container/pg', 'deployment/api', 'pod/api', 'targetless');
    const text = renderUpFile(readTemplate('mirrord-up.yaml'), ts);
    const up: unknown = parseYaml(text);
    assertUpShape(up);
    // Duplicates of the same -t collapse; two targets with one name get -2.
    assert.deepEqual(Object.keys(up.services), ['api', 'db', 'api-2', 'app']);
    assert.equal(up.services.api!.target, 'deployment/api');
    assert.equal(up.services.db!.target, 'statefulset/db/container/pg');
    assert.equal(up.services['api-2']!.target, 'pod/api');
    assert.equal(up.services.app!.target, 'none');
    assert.equal(up.services.api!.default_mode, 'split');
    assert.equal(up.services.app!.default_mode, undefined);
    assert.deepEqual((up.services.api!.run as { type: string }).type, 'exec');
    assert.equal(up.services.api!.http_filter, undefined);
    // The filter is there, commented, once per service, with the session key template.
    const filters = text.split('\n').filter((l) => /^\s*#\s*header_filter: "baggage: \.\*mirrord-session=\{\{ key \}\}\.\*"$/.test(l));
    assert.equal(filters.length, 4);
    // And it parses once uncommented (after rendering {{ key }} as mirrord up does).
    const uncommented = text.replace(/# (http_filter:)\n(\s*)# (\s*header_filter)/g, '$1\n$2$3').replaceAll('{{ key }}', 'alice');
    const live = parseYaml(uncommented) as { services: Record<string, { http_filter?: { header_filter: string } }> };
    assert.equal(live.services.api!.http_filter?.header_filter, 'baggage: .*mirrord-session=alice.*');
  });
  it('mirrord-up.yaml: -n gives each Kubernetes service {path, namespace}', async () => {
    const ts = await resolveTargets(['deployment/api'], 'staging', silentLogger);
    const up = parseYaml(renderUpFile(readTemplate('mirrord-up.yaml'), ts)) as { services: Record<string, { target: unknown }> };
    assert.deepEqual(up.services.api!.target, { path: 'deployment/api', namespace: 'staging' });
  });
});

const COMPOSE = `name: shop
services:
  web:
    image: nginx
    ports: ["8080:80"]
  api:
    build: .
  worker:
    image: busybox
x-other: keep
`;

describe('mirrord init --compose', () => {
  it('reads the service names of a compose file', () => {
    assert.deepEqual(composeServiceNames(COMPOSE, 'compose.yaml'), ['web', 'api', 'worker']);
  });
  it('without -t: a top-level x-mirrord and every service with a placeholder target', () => {
    const { text, unmatched } = renderXMirrord(readTemplate('x-mirrord.yaml'), ['web', 'api', 'worker'], []);
    assert.deepEqual(unmatched, []);
    const x = parseYaml(text) as { 'x-mirrord': Record<string, unknown>; services: Record<string, { 'x-mirrord': { target: string } }> };
    assert.equal(x['x-mirrord'].default_mode, 'split');
    assert.deepEqual(Object.keys(x.services), ['web', 'api', 'worker']);
    assert.equal(x.services.worker!['x-mirrord'].target, 'deployment/worker');
    assert.match(text, /target: deployment\/web # placeholder/);
  });
  it('with -t: only the services a target names, in the compose order; the rest reported', async () => {
    const ts = await targets('deployment/worker', 'targetless', 'pod/api', 'deployment/nope');
    const { text, unmatched } = renderXMirrord(readTemplate('x-mirrord.yaml'), ['web', 'api', 'worker'], ts);
    const x = parseYaml(text) as { services: Record<string, { 'x-mirrord': { target: string } }> };
    assert.deepEqual(Object.keys(x.services), ['api', 'worker']);
    assert.equal(x.services.api!['x-mirrord'].target, 'pod/api');
    assert.equal(x.services.worker!['x-mirrord'].target, 'deployment/worker');
    assert.doesNotMatch(text, /placeholder/);
    assert.deepEqual(
      unmatched.map((t) => t.service),
      ['app', 'nope'],
    );
  });
  it('a Docker target matches the compose service its container belongs to', () => {
    const t: InitTarget = {
      spec: { kind: 'docker', container: 'shop-web-1' },
      value: 'docker/shop-web-1',
      upValue: 'docker/shop-web-1',
      service: 'shop-web-1',
      composeService: 'web',
    };
    const x = parseYaml(renderXMirrord(readTemplate('x-mirrord.yaml'), ['web', 'api'], [t]).text) as {
      services: Record<string, { 'x-mirrord': { target: string } }>;
    };
    assert.deepEqual(Object.keys(x.services), ['web']);
    assert.equal(x.services.web!['x-mirrord'].target, 'docker/shop-web-1');
  });
  it('prints the block on stdout, writes nothing and leaves the compose file alone', async () => {
    const d = tmp();
    const file = path.join(d, 'compose.yaml');
    writeFileSync(file, COMPOSE);
    const r = await init({ compose: file, target: ['deployment/api'], dir: d });
    assert.equal(r.code, 0);
    assert.deepEqual(r.err, []);
    assert.equal(r.out.length, 1);
    assert.ok((parseYaml(r.out[0]!) as { services: Record<string, unknown> }).services.api);
    assert.equal(readFileSync(file, 'utf8'), COMPOSE);
    assert.deepEqual(readdirSync(d), ['compose.yaml']);
  });
  it('a missing compose file is a usage error, one without services a config error', async () => {
    const d = tmp();
    await assert.rejects(init({ compose: path.join(d, 'nope.yaml') }), (e: MirrordError) => e.code === ExitCode.Usage && /nope\.yaml/.test(e.message));
    writeFileSync(path.join(d, 'c.yaml'), 'version: "3"\n');
    await assert.rejects(init({ compose: path.join(d, 'c.yaml') }), (e: MirrordError) => e.code === ExitCode.Config && /has no services/.test(e.message));
    writeFileSync(path.join(d, 'bad.yaml'), 'services: [\n');
    await assert.rejects(init({ compose: path.join(d, 'bad.yaml') }), (e: MirrordError) => e.code === ExitCode.Config && /cannot parse/.test(e.message));
  });
});

describe('mirrord init: writing', () => {
  it('writes mirrord.json (one -t) and says so on stderr only', async () => {
    const d = tmp();
    const r = await init({ target: ['deployment/api'], dir: d });
    assert.equal(r.code, 0);
    assert.deepEqual(r.out, []);
    assert.deepEqual(r.err, [`mirrord: wrote ${path.join(d, 'mirrord.json')}`]);
    const { config } = await loadConfig({ cwd: d, env: {} });
    assert.equal(config.target, 'deployment/api');
  });
  it('several -t (or --up) also write mirrord-up.yaml; the first -t is the target of mirrord.json', async () => {
    const d = tmp();
    const r = await init({ target: ['deployment/api', 'deployment/web'], dir: d });
    assert.equal(r.err.length, 2);
    assert.equal((await loadConfig({ cwd: d, env: {} })).config.target, 'deployment/api');
    const up: unknown = parseYaml(readFileSync(path.join(d, 'mirrord-up.yaml'), 'utf8'));
    assertUpShape(up);
    assert.deepEqual(Object.keys(up.services), ['api', 'web']);
    const one = tmp();
    await init({ target: ['deployment/api'], up: true, dir: one });
    assert.ok(readFileSync(path.join(one, 'mirrord-up.yaml'), 'utf8').includes('  api:\n'));
  });
  it('refuses to overwrite without --force, before writing anything', async () => {
    const d = tmp();
    writeFileSync(path.join(d, 'mirrord-up.yaml'), 'mine\n');
    await assert.rejects(
      init({ target: ['deployment/api'], up: true, dir: d }),
      (e: MirrordError) =>
        e.code === ExitCode.Usage &&
        e.oneLine() === `mirrord: ${path.join(d, 'mirrord-up.yaml')} already exists. Pass --force to overwrite it, or --dir DIR to write elsewhere`,
    );
    assert.equal(existsSync(path.join(d, 'mirrord.json')), false);
    assert.equal(readFileSync(path.join(d, 'mirrord-up.yaml'), 'utf8'), 'mine\n');
    const r = await init({ target: ['deployment/api'], up: true, dir: d, force: true });
    assert.equal(r.code, 0);
    assert.notEqual(readFileSync(path.join(d, 'mirrord-up.yaml'), 'utf8'), 'mine\n');
  });
  it('an invalid target string is a usage error and nothing is written', async () => {
    const d = tmp();
    await assert.rejects(
      init({ target: ['deploy/api'], dir: d }),
      (e: MirrordError) => e.code === ExitCode.Usage && /invalid target "deploy\/api"/.test(e.message),
    );
    assert.deepEqual(readdirSync(d), []);
  });
  it('--dir is created when missing; --schema replaces the computed $schema', async () => {
    const d = path.join(tmp(), 'a', 'b');
    await init({ dir: d, schema: 'https://example.invalid/mirrord.schema.json' });
    const json = JSON.parse(readFileSync(path.join(d, 'mirrord.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json.$schema, 'https://example.invalid/mirrord.schema.json');
    assert.equal('target' in json, false);
  });
});

describe('mirrord init: $schema', () => {
  it('points at the nearest node_modules/mirrord, relative to the file', () => {
    const root = tmp();
    const schema = path.join(root, 'node_modules/mirrord/schema/mirrord.schema.json');
    mkdirSync(path.dirname(schema), { recursive: true });
    writeFileSync(schema, '{}');
    mkdirSync(path.join(root, 'svc/api'), { recursive: true });
    assert.equal(schemaRef(root), './node_modules/mirrord/schema/mirrord.schema.json');
    assert.equal(schemaRef(path.join(root, 'svc/api')), '../../node_modules/mirrord/schema/mirrord.schema.json');
  });
  it('without one (a global install): the project-install path', () => {
    assert.equal(schemaRef(tmp()), './node_modules/mirrord/schema/mirrord.schema.json');
  });
});
