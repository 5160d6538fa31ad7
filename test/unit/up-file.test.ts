import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MirrordError } from '../../common/errors.js';
import { renderTemplate } from '../../src/config/template.js';
import { parseUpFile } from '../../src/up/file.js';
import { planServices } from '../../src/up/plan.js';
import { upLabelValue } from '../../src/up/run.js';

const FILE = `common:
  context: staging
services:
  api:
    target: deployment/api
    http_filter: { header_filter: "^x-dev: {{ key }}$" }
    ignore_ports: [9090]
    env: { exclude: "SECRET_*" }
    run: { type: exec, command: [node, server.js] }
  worker:
    target: { path: docker/worker }
    default_mode: mirror
    run: { type: container, command: [docker, run, --rm, worker:dev] }
  inferred:
    run: { type: exec, command: [sh] }
  tools:
    skip: true
    target: none
    run: { type: exec, command: [sh] }
`;

function errorOf(fn: () => unknown): MirrordError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MirrordError, String(err));
    return err;
  }
  assert.fail('no error');
}

describe('mirrord-up.yaml', () => {
  it('renders {{ key }}, {{ git_branch }} and get_env before parsing; anything else names its line', () => {
    const ctx = { key: 'alice', gitBranch: () => 'feat-x', env: { ZONE: 'eu' } };
    assert.equal(
      renderTemplate('a: {{ key }}\nb: {{git_branch}}\nc: {{ get_env(name="ZONE") }}\nd: {{ get_env(name="NO", default="dflt") }}', ctx),
      'a: alice\nb: feat-x\nc: eu\nd: dflt',
    );
    assert.match(errorOf(() => renderTemplate('a: 1\nb: {{ user }}', ctx, 'up.yaml')).message, /^up\.yaml:2: unknown template expression \{\{ user \}\}/);
    assert.match(errorOf(() => renderTemplate('x: {{ get_env(name="NO") }}', ctx, 'up.yaml')).message, /up\.yaml:1: get_env: NO is not set/);
  });

  it('parses every key of the format', () => {
    const f = parseUpFile(renderTemplate(FILE, { key: 'alice' }), 'up.yaml');
    assert.equal(f.common?.context, 'staging');
    assert.deepEqual(Object.keys(f.services), ['api', 'worker', 'inferred', 'tools']);
    assert.deepEqual(f.services.api!.http_filter, { header_filter: '^x-dev: alice$' });
    assert.equal(f.services.tools!.skip, true);
    assert.equal(f.services.api!.skip, false);
  });

  it('reports every unknown key and wrong type at once, each with its line', () => {
    const bad = `services:\n  one:\n    run: { type: exec, command: [a] }\n    colour: blue\n  two:\n    default_mode: split-ish\n    run: { type: shell, command: [] }\nextra: 1\n`;
    const msg = errorOf(() => parseUpFile(bad, 'up.yaml')).message;
    assert.match(msg, /up\.yaml:4: services\.one\.colour: unknown key/);
    assert.match(msg, /up\.yaml:6: services\.two\.default_mode: expected one of split\|replace\|mirror/);
    assert.match(msg, /up\.yaml:7: services\.two\.run\.type: expected one of exec\|container/);
    assert.match(msg, /up\.yaml:8: extra: unknown key/);
    assert.equal(errorOf(() => parseUpFile(bad, 'up.yaml')).code, 78);
    assert.match(errorOf(() => parseUpFile('services: [1\n', 'up.yaml')).message, /^up\.yaml:\d+: /);
  });

  it('plans the services: modes, filters, targets, skip, the services named', () => {
    const f = parseUpFile(renderTemplate(FILE, { key: 'alice' }), 'up.yaml');
    const plan = planServices(f, { key: 'alice', only: [] });
    assert.deepEqual(
      plan.map((s) => s.name),
      ['api', 'worker', 'inferred'],
    );
    const [api, worker, inferred] = plan;
    assert.equal(api!.config.feature?.network?.incoming?.mode, 'steal');
    assert.equal(api!.config.feature?.network?.incoming?.http_filter?.header_filter, '^x-dev: alice$');
    assert.deepEqual(api!.config.feature?.network?.incoming?.ignore_ports, [9090]);
    assert.equal(api!.config.kube_context, 'staging');
    assert.deepEqual(api!.target, { kind: 'deployment', name: 'api', namespace: undefined });
    assert.equal(worker!.config.feature?.network?.incoming?.mode, 'mirror');
    assert.equal(inferred!.target, undefined);
    // split without a filter: the key in the baggage header, exactly.
    const split = planServices(f, { key: 'a.b', only: ['inferred'] })[0]!;
    const re = new RegExp(split.config.feature!.network!.incoming!.http_filter!.header_filter!, 'i');
    assert.ok(re.test('baggage: mirrord-session=a.b'));
    assert.ok(re.test('baggage: k=v, mirrord-session=a.b;p=1'));
    assert.ok(!re.test('baggage: mirrord-session=a.bc'));
    assert.ok(!re.test('baggage: mirrord-session=axb'));
    assert.ok(!re.test('x-baggage: mirrord-session=a.b'));
    // -m wins over default_mode; a named skipped service runs.
    assert.equal(planServices(f, { key: 'k', mode: 'replace', only: ['worker'] })[0]!.config.feature?.network?.incoming?.http_filter, undefined);
    assert.equal(planServices(f, { key: 'k', only: ['tools'] })[0]!.target?.kind, 'targetless');
  });

  it('refuses a service name the file lacks, listing those it has, and two steals of one target', () => {
    const f = parseUpFile(renderTemplate(FILE, { key: 'k' }), 'up.yaml');
    assert.match(errorOf(() => planServices(f, { key: 'k', only: ['nope'] })).hint!, /api, worker, inferred, tools/);
    const two = parseUpFile(
      `services:\n  a: { target: docker/t, run: { type: exec, command: [x] } }\n  b: { target: docker/t, default_mode: replace, run: { type: exec, command: [x] } }\n`,
      'up.yaml',
    );
    assert.match(errorOf(() => planServices(two, { key: 'k', only: [] })).message, /services a and b both steal from docker\/t, and b without an HTTP filter/);
    assert.equal(planServices(two, { key: 'k', mode: 'mirror', only: [] }).length, 2);
  });

  it('lets services steal one target through a shared agent when each has its own HTTP filter', () => {
    const svc = (name: string, filter?: string) =>
      `  ${name}: { target: docker/t, ${filter ? `http_filter: { header_filter: '${filter}' }, ` : ''}run: { type: exec, command: [x] } }\n`;
    const planned = planServices(parseUpFile(`services:\n${svc('a', 'x-who: a')}${svc('b', 'x-who: b')}`, 'up.yaml'), { key: 'k', only: [] });
    assert.deepEqual(
      planned.map((s) => s.config.agent.shared),
      [true, true],
    );
    // Split mode's default filter is the session key, the same for both: they would take each other's requests.
    const same = parseUpFile(`services:\n${svc('a')}${svc('b')}`, 'up.yaml');
    assert.match(errorOf(() => planServices(same, { key: 'k', only: [] })).message, /services a and b both steal from docker\/t, with the same HTTP filter/);
    // One service alone keeps its own agent.
    assert.equal(planServices(parseUpFile(`services:\n${svc('a', 'x-who: a')}`, 'up.yaml'), { key: 'k', only: [] })[0]!.config.agent.shared ?? false, false);
  });

  it('makes a label value of any key', () => {
    assert.equal(upLabelValue('alice'), 'alice');
    assert.equal(upLabelValue('Jane Doe@corp'), 'Jane-Doe-corp');
    assert.equal(upLabelValue('x'.repeat(80)).length, 63);
    assert.equal(upLabelValue('@@'), 'up');
  });
});
