import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ExitCode, type MirrordError } from '../../common/errors.js';
import { expandKubeconfig } from '../../src/config/kubeconfig.js';
import { flagOverrides } from '../../src/config/flags.js';
import { ConfigError, loadConfig, validateConfig } from '../../src/config/load.js';
import { levelOfFilter } from '../../src/config/log-level.js';
import { resolveFeatures, skippedProcesses } from '../../src/config/schema.js';
import { renderTemplate } from '../../src/config/template.js';
import { parseTarget, targetFrom } from '../../src/target.js';

/** mirrord's value shapes (issue 17, items 1, 2 and 5), each checked for acceptance and for what it resolves to. */

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'mirrord-shapes-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
    writeFileSync(path.join(d, name), text);
  }
  return d;
}

async function load(name: string, text: string, env: NodeJS.ProcessEnv = {}) {
  return loadConfig({ cwd: dir({ [name]: text, 'package.json': '{}' }), env });
}

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('mirrord value shapes', () => {
  it('boolean and string shorthands of each section', () => {
    const on = resolveFeatures(
      validateConfig({ target: 'docker/x', feature: { fs: true, env: true, network: { incoming: true, dns: true, outgoing: true } } }),
    );
    assert.deepEqual([on.fs.mode, on.incoming.mode, on.dns.enabled, on.outgoing.tcp, on.env.include], ['read', 'mirror', true, true, undefined]);
    const off = resolveFeatures(
      validateConfig({ target: 'docker/x', feature: { fs: false, env: false, network: { incoming: false, dns: false, outgoing: false } } }),
    );
    assert.deepEqual(
      [off.fs.mode, off.incoming.mode, off.dns.enabled, off.outgoing.tcp, off.outgoing.udp, off.env.include],
      ['local', 'off', false, false, false, []],
    );
    const net = resolveFeatures(validateConfig({ target: 'docker/x', feature: { network: false } }));
    assert.deepEqual([net.incoming.mode, net.dns.enabled, net.outgoing.tcp], ['off', false, false]);
    const s = resolveFeatures(validateConfig({ target: 'docker/x', feature: { fs: 'read', network: { incoming: 'steal' } } }));
    assert.deepEqual([s.fs.mode, s.incoming.mode], ['read', 'steal']);
  });
  it('one string where mirrord takes a string or a list; http_filter.ports as a number', () => {
    const f = resolveFeatures(
      validateConfig({
        target: 'docker/x',
        feature: {
          network: {
            outgoing: { filter: { local: 'cache:6379' } },
            dns: { filter: { remote: '.svc.cluster.local' } },
            incoming: { mode: 'steal', http_filter: { header_filter: 'x-user: me', ports: 8080 } },
          },
        },
      }),
    );
    assert.deepEqual(f.outgoing.filter?.local, ['cache:6379']);
    assert.deepEqual(f.dns.filter?.remote, ['.svc.cluster.local']);
    assert.deepEqual(f.incoming.http_filter?.ports, [8080]);
  });
  it('a flag adds to a section written as a bare boolean, keeping what the boolean meant', async () => {
    const d = dir({
      'mirrord.json': '{"target":"docker/x","feature":{"fs":false,"network":{"incoming":false,"outgoing":false,"dns":false},"env":false}}',
      'package.json': '{}',
    });
    const { config } = await loadConfig({
      cwd: d,
      env: {},
      overrides: flagOverrides({ steal: true, fsMode: 'write', remoteDns: false, includeEnv: 'A', outgoing: false }),
    });
    const f = resolveFeatures(config);
    assert.deepEqual([f.fs.mode, f.incoming.mode, f.dns.enabled, f.outgoing.tcp, f.env.include], ['write', 'steal', false, false, ['A']]);
    const net = await loadConfig({
      cwd: dir({ 'mirrord.json': '{"target":"docker/x","feature":{"network":false}}', 'package.json': '{}' }),
      env: {},
      overrides: flagOverrides({ steal: true }),
    });
    const n = resolveFeatures(net.config);
    assert.deepEqual([n.incoming.mode, n.outgoing.tcp, n.dns.enabled], ['steal', false, false]);
  });
  it('null is "not set", as in mirrord', () => {
    const c = validateConfig(JSON.parse('{"target":"docker/x","kubeconfig":null,"agent":{"image":null}}') as unknown);
    assert.equal(c.kubeconfig, undefined);
    assert.equal(c.agent.image, undefined);
  });
  it('every target shape becomes one target string', () => {
    const path_ = (t: unknown) => {
      const c = validateConfig({ target: t });
      return typeof c.target === 'string' ? c.target : c.target?.path;
    };
    assert.equal(path_('deploy/api'), 'deployment/api');
    assert.equal(path_({ path: 'pod/x' }), 'pod/x');
    assert.equal(path_({ path: { deployment: 'api', container: 'main' } }), 'deployment/api/container/main');
    assert.equal(path_({ path: { cron_job: 'nightly' } }), 'cronjob/nightly');
    assert.equal(path_({ path: { stateful_set: 'db' } }), 'statefulset/db');
    assert.equal(path_({ path: { replica_set: 'rs' } }), 'replicaset/rs');
    for (const k of ['pod', 'rollout', 'job', 'service']) assert.equal(path_({ path: { [k]: 'n' } }), `${k}/n`);
    assert.deepEqual(parseTarget('job/j/container/c', 'ns'), { kind: 'job', name: 'j', container: 'c', namespace: 'ns' });
  });
  it('no target, or {namespace} alone, is targetless, with no warning', async () => {
    const none = await load('mirrord.json', '{}');
    assert.deepEqual(targetFrom(none.config), { kind: 'targetless' });
    assert.equal(resolveFeatures(none.config).incoming.mode, 'off');
    const ns = await load('mirrord.yaml', 'target:\n  namespace: team-a\n');
    assert.deepEqual(targetFrom(ns.config), { kind: 'targetless', namespace: 'team-a' });
  });
  it('replicaset/ targets parse; the session stops at start with a precise error', () => {
    const c = validateConfig({ target: 'replicaset/web-7d9f' });
    assert.throws(
      () => targetFrom(c),
      (e: MirrordError) =>
        e.code === ExitCode.Target && /replicaset\/web-7d9f: replicaset targets cannot run here yet/.test(e.message) && /deployment\/NAME/.test(e.hint ?? ''),
    );
  });
  it('agent.image as {registry, tag}; pull secrets as [{name}]; the pull policy in any case', () => {
    const a = validateConfig({
      agent: { image: { registry: 'registry.local/agent', tag: 'v2' }, image_pull_secrets: [{ name: 'regcred' }, 'other'], image_pull_policy: 'always' },
    }).agent;
    assert.equal(a.image, 'registry.local/agent:v2');
    assert.deepEqual(a.image_pull_secrets, ['regcred', 'other']);
    assert.equal(a.image_pull_policy, 'Always');
    assert.equal(validateConfig({ agent: { image: 'ghcr.io/metalbear-co/mirrord:3.100.0' } }).agent.image, undefined);
    assert.match(problems({ agent: { image_pull_policy: 'Sometimes' } })[0]!, /^agent\.image_pull_policy: expected Always, IfNotPresent or Never/);
  });
  it('agent.log_level: a level or a RUST_LOG filter', () => {
    assert.equal(levelOfFilter('mirrord=debug,warn'), 'debug');
    assert.equal(levelOfFilter('warn,mirrord_agent::steal=trace'), 'trace');
    assert.equal(levelOfFilter('info'), 'info');
    assert.equal(levelOfFilter('hyper=debug,error'), 'error');
    assert.equal(levelOfFilter('off'), 'error');
    assert.equal(levelOfFilter('not a level!'), undefined);
    assert.equal(validateConfig({ agent: { log_level: 'mirrord=trace,warn' } }).agent.log_level, 'trace');
    assert.match(problems({ agent: { log_level: 'mirrord=loud' } })[0]!, /^agent\.log_level: expected a level/);
  });
});

describe('mirrord semantics', () => {
  it("{{ }} templates in JSON, YAML and TOML, with the file's own key", async () => {
    const env = { APP_NS: 'staging' };
    const json = await load(
      'mirrord.json',
      `{"key":"alice","target":{"path":"deployment/api","namespace":"{{ get_env(name='APP_NS') }}"},"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"header_filter":"baggage: .*mirrord-session={{ key }}"}}}}}`,
      env,
    );
    assert.deepEqual(json.config.target, { path: 'deployment/api', namespace: 'staging' });
    assert.equal(json.config.key, 'alice');
    assert.equal(resolveFeatures(json.config).incoming.http_filter?.header_filter, 'baggage: .*mirrord-session=alice');
    const yaml = await load('mirrord.yaml', "target: \"docker/{{ get_env(name='APP', default='web') }}\"\n", env);
    assert.equal(yaml.config.target, 'docker/web');
    const toml = await load('mirrord.toml', 'key = "bob"\n[feature.env.override]\nSESSION = "{{ key }}"\n', env);
    assert.deepEqual(resolveFeatures(toml.config).env.override, undefined); // targetless: no env
    assert.deepEqual(toml.config.feature?.env?.override, { SESSION: 'bob' });
  });
  it("MIRRORD_KEY wins over the file's key; the user name is the default", async () => {
    const text = '{"key":"alice","feature":{"env":{"override":{"K":"{{ key }}"}}}}';
    assert.deepEqual((await load('mirrord.json', text, { MIRRORD_KEY: 'ci-42' })).config.feature?.env?.override, { K: 'ci-42' });
    const noKey = await load('mirrord.json', '{"feature":{"env":{"override":{"K":"{{ key }}"}}}}');
    assert.equal(noKey.config.key, os.userInfo().username);
    assert.deepEqual(noKey.config.feature?.env?.override, { K: os.userInfo().username });
  });
  it("Tera's | default(value=...) covers a missing branch or variable", () => {
    const noBranch = () => {
      throw new Error('not a git checkout');
    };
    const ctx = { key: 'k', env: { SET: 'yes' }, gitBranch: noBranch };
    assert.equal(renderTemplate(`{{ git_branch | default(value='main') }}`, ctx), 'main');
    assert.equal(renderTemplate(`{{ get_env(name="UNSET") | default(value="d") }}-{{ get_env(name='SET')|default(value='d') }}`, ctx), 'd-yes');
    assert.equal(renderTemplate('{{ key | default(value="x") }}', ctx), 'k');
    assert.throws(() => renderTemplate('{{ git_branch }}', ctx), /not a git checkout/);
  });
  it('an unknown template expression is a config error naming its line', async () => {
    await assert.rejects(
      load('mirrord.yaml', 'target: docker/x\nkey: "{{ nope }}"\n'),
      (e: MirrordError) => e.code === ExitCode.Config && /mirrord\.yaml:2: unknown template expression/.test(e.message),
    );
  });
  it('kubeconfig: ~ and $VAR expanded, a colon list keeps its existing files (merged as KUBECONFIG)', async () => {
    const home = dir({ '.kube/config': 'x', 'b/config': 'y' });
    const env = { HOME: home, KDIR: path.join(home, 'b') };
    assert.equal(expandKubeconfig('~/.kube/config', env), path.join(home, '.kube/config'));
    assert.equal(expandKubeconfig('${KDIR}/config', env), path.join(home, 'b/config'));
    assert.equal(expandKubeconfig(`/nope/config:$KDIR/config:~/.kube/config`, env), `${path.join(home, 'b/config')}:${path.join(home, '.kube/config')}`);
    assert.throws(
      () => expandKubeconfig('$UNSET_VAR/config', env),
      (e: MirrordError) => e.code === ExitCode.Config && /\$UNSET_VAR is not set/.test(e.message),
    );
    const loaded = await load('mirrord.json', '{"kubeconfig":"~/.kube/config"}', env);
    assert.equal(loaded.config.kubeconfig, path.join(home, '.kube/config'));
  });
  it("skip_build_tools adds mirrord's build tools (and skip_extra_build_tools) to skip_processes", () => {
    assert.equal(skippedProcesses(validateConfig({})), undefined);
    const list = skippedProcesses(validateConfig({ skip_processes: 'bash', skip_build_tools: true, skip_extra_build_tools: 'bazel' }))!;
    for (const n of ['bash', 'go', 'cargo', 'git', 'bazel']) assert.ok(list.includes(n), n);
    assert.deepEqual(skippedProcesses(validateConfig({ skip_extra_build_tools: ['bazel'] })), undefined);
  });
});

describe('paid-operator features', () => {
  const cases: [unknown, string][] = [
    [{ operator: true }, 'operator'],
    [{ profile: 'team/dev' }, 'profile'],
    [{ feature: { split_queues: { q: { queue_type: 'SQS' } } } }, 'feature.split_queues'],
    [{ feature: { db_branches: [{ type: 'pg' }] } }, 'feature.db_branches'],
    [{ feature: { preview: { enabled: true } } }, 'feature.preview'],
    [{ target: 'label/app=api' }, 'target'],
    [{ target: { path: { labels: { app: 'api' } } } }, 'target.path'],
  ];
  for (const [raw, key] of cases) {
    it(`${key}: one line naming the key, "needs mirrord's operator", exit 78`, () => {
      assert.throws(
        () => validateConfig(raw, 'mirrord.json'),
        (e: ConfigError) => {
          assert.equal(e.code, 78);
          assert.deepEqual(
            e.problems.map((p) => p.path),
            [key],
          );
          assert.match(
            e.oneLine(),
            new RegExp(`^mirrord: invalid configuration in mirrord\\.json: ${key.replace(/\./g, '\\.')}: (label targets: )?needs mirrord's operator`),
          );
          assert.ok(!e.oneLine().includes('\n'));
          return true;
        },
      );
    });
  }
  it('operator: false is accepted', () => {
    assert.equal(validateConfig({ operator: false }).operator, false);
  });
});
