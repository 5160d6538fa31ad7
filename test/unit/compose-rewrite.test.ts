import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { escapeValue, serviceArgv, sidecarName, toComposeYaml, withSessions, withSidecars, type ComposeDoc } from '../../src/compose/rewrite.js';
import { findUpInput, localNames, planCompose } from '../../src/up/compose-file.js';
import { MirrordError } from '../../common/errors.js';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';

/**
 * The rewrite of a compose project for `mirrord up`, with no engine: a real `docker compose config`
 * output (test/unit/golden/compose-config.yaml) in, the file Compose is given out, compared with
 * test/unit/golden/compose-rewrite.yaml (UPDATE_GOLDEN=1 rewrites it after a deliberate change).
 */
const GOLDEN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'golden');
const input = () => parse(readFileSync(path.join(GOLDEN, 'compose-config.yaml'), 'utf8')) as ComposeDoc;
const LABELS = { 'dev.mirrord.up': 'k', 'dev.mirrord.up.project': 'golden' };

function rewrite(doc: ComposeDoc): string {
  const sidecar = sidecarName(doc, 'app');
  const sidecars = [
    {
      service: 'app',
      sidecar,
      image: 'mirrord-sidecar:test',
      env: { MIRRORD_SIDECAR_TOKEN: 'tok$en', MIRRORD_SIDECAR_CAPTURE: 'off' },
      labels: { 'dev.mirrord.agent': 'sidecar' },
      netAdmin: false,
    },
  ];
  const sessions = [
    {
      service: 'app',
      sidecar,
      argv: serviceArgv(doc.services.app!, { Cmd: ['python3', '-u', 'server.py'], Entrypoint: null }, 'app'),
      init: { path: '/mirrord/mirrord-init', lifelinePort: 4242 },
      remoteEnv: { SHARED: 'from-target', TARGET_ONLY: 'yes', PRICE: '$5' },
      overrideEnv: { OVERRIDDEN: 'by-mirrord' },
      layerEnv: { MIRRORD_LAYER_ADDR: '127.0.0.1:4343', LD_PRELOAD: '/mirrord/libmirrord_layer.so' },
    },
  ];
  return toComposeYaml(withSessions(doc, sidecars, sessions, LABELS));
}

describe('compose rewrite', () => {
  it('matches the golden file', () => {
    const out = rewrite(input());
    const golden = path.join(GOLDEN, 'compose-rewrite.yaml');
    if (process.env.UPDATE_GOLDEN || !existsSync(golden)) writeFileSync(golden, out);
    assert.equal(out, readFileSync(golden, 'utf8'));
  });

  it('hands the namespace to the sidecar and keeps the rest of the service', () => {
    const doc = parse(rewrite(input())) as ComposeDoc;
    const app = doc.services.app!;
    const side = doc.services['mirrord-app']!;
    assert.equal(app.network_mode, 'service:mirrord-app');
    for (const k of ['networks', 'ports', 'hostname']) assert.equal(app[k], undefined, k);
    assert.deepEqual(side.networks, { default: { aliases: ['app', 'app-alias'] } });
    assert.equal(side.hostname, 'app-host');
    assert.deepEqual(side.sysctls, { 'net.ipv4.ip_local_port_range': '1024 65000' });
    assert.deepEqual(app.sysctls, { 'kernel.shmmax': '1000000' });
    assert.deepEqual(app.volumes_from, ['mirrord-app:ro']);
    assert.deepEqual(app.entrypoint, ['/mirrord/mirrord-init', '4242', 'python3', '-u', 'server.py']);
    assert.equal(app.command, undefined);
    // Declared keys win over the target's, override and the layer over both; $ escaped for Compose.
    const env = app.environment as Record<string, string>;
    assert.equal(env.SHARED, 'from-compose');
    assert.equal(env.TARGET_ONLY, 'yes');
    assert.equal(env.PRICE, '$$5');
    assert.equal(env.LITERAL, 'a$$b');
    assert.equal(env.OVERRIDDEN, 'by-mirrord');
    assert.equal(env.LD_PRELOAD, '/mirrord/libmirrord_layer.so');
    assert.equal((side.environment as Record<string, string>).MIRRORD_SIDECAR_TOKEN, 'tok$$en');
    assert.equal(side.stdin_open, true);
    // Services without x-mirrord are as Compose printed them, with the up's labels.
    assert.deepEqual(doc.services.redis!.command, input().services.redis!.command);
    assert.deepEqual(doc.services.redis!.labels, LABELS);
    assert.ok(doc.services.probe!.depends_on);
  });

  it("runs the image's command when the file has none, and the file's entrypoint drops the image's CMD", () => {
    assert.deepEqual(serviceArgv({}, { Entrypoint: ['/e'], Cmd: ['c', '$x'] }, 's'), ['/e', 'c', '$$x']);
    assert.deepEqual(serviceArgv({ entrypoint: ['/mine'] }, { Entrypoint: ['/e'], Cmd: ['c'] }, 's'), ['/mine']);
    assert.deepEqual(serviceArgv({ command: ['run'] }, { Entrypoint: ['/e'], Cmd: ['c'] }, 's'), ['/e', 'run']);
    assert.throws(() => serviceArgv({}, {}, 's'), /service s has no entrypoint or command/);
    assert.equal(escapeValue('a$b$$'), 'a$$b$$$$');
  });

  it('refuses network_mode host and several replicas', () => {
    const doc = input();
    doc.services.app!.network_mode = 'host';
    assert.throws(
      () => withSidecars(doc, [{ service: 'app', sidecar: 'mirrord-app', image: 'i', env: {}, labels: {}, netAdmin: false }], {}),
      /network_mode: host/,
    );
    const two = input();
    two.services.app!.deploy = { replicas: 2 };
    assert.throws(() => withSidecars(two, [{ service: 'app', sidecar: 'mirrord-app', image: 'i', env: {}, labels: {}, netAdmin: false }], {}), /2 replicas/);
  });

  it('names a sidecar that no service has', () => {
    const doc = input();
    doc.services['mirrord-app'] = {};
    assert.equal(sidecarName(doc, 'app'), 'mirrord-app-2');
  });
});

describe('compose x-mirrord', () => {
  const plan = (doc: ComposeDoc, only: string[] = []) => planCompose(doc, { key: 'k', only });

  it('plans the marked service with the defaults, the target and the project names kept local', () => {
    const p = plan(input());
    assert.equal(p.marked.length, 1);
    const app = p.marked[0]!;
    assert.equal(app.name, 'app');
    assert.equal(app.mode, 'mirror');
    assert.deepEqual(app.target, { kind: 'docker', container: 'target' });
    assert.equal(app.config.feature?.network?.incoming?.mode, 'mirror');
    assert.deepEqual(app.config.feature?.env?.override, { OVERRIDDEN: 'by-mirrord' });
    assert.deepEqual(localNames(input()), ['app', 'app-alias', 'probe', 'redis']);
    assert.deepEqual(app.config.feature?.network?.dns?.filter?.local, ['app', 'app-alias', 'probe', 'redis']);
    assert.deepEqual(app.config.feature?.network?.outgoing?.filter?.local, ['app', 'app-alias', 'probe', 'redis']);
  });

  it('keeps a filter of its own config, and merges the top-level fragment under the service one', () => {
    const doc = input();
    doc['x-mirrord'] = { config: { feature: { network: { dns: { filter: { remote: ['db'] } } } }, agent: { log_level: 'debug' } } };
    doc.services.app!['x-mirrord'] = { target: 'docker/target', default_mode: 'split', config: { agent: { startup_timeout: 99 } } };
    const app = plan(doc).marked[0]!;
    assert.deepEqual(app.config.feature?.network?.dns?.filter?.remote, ['db']);
    assert.equal(app.config.feature?.network?.outgoing?.filter, undefined);
    assert.equal(app.config.agent.log_level, 'debug');
    assert.equal(app.config.agent.startup_timeout, 99);
    assert.match(app.config.feature?.network?.incoming?.http_filter?.header_filter ?? '', /mirrord-session=k/);
  });

  it('reads $$ in x-mirrord as one $ (a regex anchor written for Compose)', () => {
    const doc = input();
    doc.services.app!['x-mirrord'] = { target: 'docker/target', default_mode: 'split', http_filter: { header_filter: '^x-dev: k$$' } };
    assert.equal(plan(doc).marked[0]!.config.feature?.network?.incoming?.http_filter?.header_filter, '^x-dev: k$');
  });

  it('says which keys are wrong, with their paths, exit 78', () => {
    const doc = input();
    doc.services.app!['x-mirrord'] = { target: 'docker/target', bogus: 1, default_mode: 'sideways' };
    assert.throws(
      () => plan(doc),
      (err: unknown) =>
        err instanceof MirrordError &&
        err.code === 78 &&
        /services\.app\.x-mirrord\.bogus: unknown key/.test(err.message) &&
        /services\.app\.x-mirrord\.default_mode/.test(err.message),
    );
  });

  it('x-mirrord: true infers the target; skip runs it as plain Compose unless named; unknown names list the others', () => {
    const doc = input();
    doc.services.app!['x-mirrord'] = true;
    assert.equal(plan(doc).marked[0]!.target, undefined);
    // x-mirrord's own `skip` key (a service Compose runs plainly), not a skipped test.
    doc.services.app!['x-mirrord'] = Object.fromEntries([['skip', true]]);
    assert.equal(plan(doc).marked.length, 0);
    assert.equal(plan(doc, ['app']).marked.length, 1);
    assert.throws(
      () => plan(doc, ['nope']),
      (err: unknown) => err instanceof MirrordError && /no service named nope.*Its services: app, probe, redis/.test(err.oneLine()),
    );
  });

  it('runs only the named services and what they depend on', () => {
    const doc = input();
    assert.equal(plan(doc, ['redis']).marked.length, 0);
    assert.deepEqual(
      plan(doc, ['probe']).marked.map((s) => s.name),
      ['app'],
    );
  });
});

describe('up input', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-input-'));
  const file = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return name;
  };

  it('tells an up file from a compose file', () => {
    assert.equal(findUpInput([file('mirrord-up.yaml', 'services: {}\n')], dir).kind, 'up');
    assert.equal(findUpInput([file('compose.yaml', 'services: {}\n')], dir).kind, 'compose');
    assert.equal(findUpInput([file('a.yaml', 'services:\n  x:\n    run: {type: exec, command: [true]}\n')], dir).kind, 'up');
    assert.equal(findUpInput([file('b.yaml', 'services:\n  x:\n    image: busybox\n    x-mirrord: true\n')], dir).kind, 'compose');
    assert.equal(findUpInput([file('c.yaml', 'services:\n  x:\n    image: busybox\n')], dir).kind, 'compose');
    assert.equal(findUpInput(['compose.yaml', 'c.yaml'], dir).kind, 'compose');
  });

  it('looks for mirrord-up.yaml first, then the names Compose looks for', () => {
    const only = mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-input-'));
    writeFileSync(path.join(only, 'docker-compose.yml'), 'services: {}\n');
    assert.deepEqual(findUpInput([], only), { kind: 'compose', files: [path.join(only, 'docker-compose.yml')] });
    writeFileSync(path.join(only, 'mirrord-up.yaml'), 'services: {}\n');
    assert.equal(findUpInput([], only).kind, 'up');
    assert.throws(() => findUpInput([], mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-input-'))), /no mirrord-up.yaml or compose file/);
  });
});
