/**
 * mirrord users' config keys end to end (issue 17): the real CLI with a config file in mirrord's
 * shapes against a real Docker target. feature.env.mapping and unset seen by `sh`, feature.fs.mapping
 * seen by `cat` and `python3` reading a path that exists only in the target under another name,
 * readonly_file_buffer 0, and `mirrord verify-config` naming keys without effect and refusing
 * paid-operator ones.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

const tag = randomBytes(3).toString('hex');
let target: TestContainer;
let cfgDir = '';

function configFile(obj: unknown, ext = 'json'): string {
  const file = path.join(cfgDir, `${randomBytes(3).toString('hex')}.${ext}`);
  writeFileSync(file, typeof obj === 'string' ? obj : JSON.stringify(obj));
  return file;
}

function exec(config: string, cmd: string[], env?: NodeJS.ProcessEnv) {
  return runCli(['exec', '-t', `docker/${target.name}`, '-f', config, '--', ...cmd], { env, timeoutMs: 90_000 });
}

describe('mirrord config compatibility (mirrord exec)', { timeout: 600_000 }, () => {
  before(async () => {
    cfgDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-compat-'));
    target = await runContainer({
      name: `e2e-compat-${tag}`,
      cmd: ['sh', '-c', 'mkdir -p /srv/conf && echo "from-the-target-conf" > /srv/conf/app.conf && exec sleep infinity'],
      env: { CONNECT_TIMEOUT: '500', READ_TIMEOUT: '20', DB_URL: 'pg://remote-db', AWS_PROFILE: 'prod', Aws_Region: 'eu-1' },
    });
    // The file exists once the shell has run: wait for it rather than for a fixed time.
    for (let i = 0; i < 100 && (await target.exec(['test', '-f', '/srv/conf/app.conf'])).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
  });

  after(async () => {
    await target?.remove().catch(() => undefined);
    rmSync(cfgDir, { recursive: true, force: true });
  });

  it('feature.env.mapping rewrites remote values by name; unset removes local and remote names in any case', async () => {
    const config = configFile({ feature: { env: { mapping: { '.+_TIMEOUT$': '9000' }, unset: 'aws_profile;AWS_REGION', override: { READ_TIMEOUT: '1' } } } });
    const r = await exec(
      config,
      ['sh', '-c', 'echo "C=$CONNECT_TIMEOUT R=$READ_TIMEOUT DB=$DB_URL P=${AWS_PROFILE-none} G=${Aws_Region-none} L=${AWS_REGION-none}"'],
      {
        AWS_PROFILE: 'local-profile',
        AWS_REGION: 'local-region',
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'C=9000 R=1 DB=pg://remote-db P=none G=none L=none');
    // Without the keys the same program sees the target's values: the config is what changed them.
    const plain = await exec(configFile({}), ['sh', '-c', 'echo "C=$CONNECT_TIMEOUT P=$AWS_PROFILE"'], { AWS_PROFILE: 'local-profile' });
    assert.equal(plain.stdout.trim(), 'C=500 P=prod', plain.stderr);
  });

  it("feature.fs.mapping: cat and python3 read the target's file through a path that exists only under another name", async () => {
    // Under the home directory, which is local by default: the mapping must reach the intproxy anyway.
    const homePath = path.join(os.homedir(), `mirrord-e2e-${tag}`, 'conf', 'app.conf');
    const config = configFile(
      [
        'feature:',
        '  fs:',
        '    mode: read',
        '    mapping:',
        `      "^${os.homedir()}/mirrord-e2e-[0-9a-f]+/conf": /srv/conf`,
        '      "^/opt/(?P<app>[a-z]+)-settings/": "/srv/${app}/"',
        '',
      ].join('\n'),
      'yaml',
    );
    const cat = await exec(config, ['cat', homePath]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, 'from-the-target-conf\n');
    const py = await exec(config, ['python3', '-c', 'print(open("/opt/conf-settings/app.conf").read().strip())']);
    assert.equal(py.code, 0, py.stderr);
    assert.equal(py.stdout, 'from-the-target-conf\n');
    // Without the mapping neither path exists.
    const none = await exec(configFile({ feature: { fs: 'read' } }), ['cat', '/opt/conf-settings/app.conf']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /No such file/);
  });

  it('feature.fs.readonly_file_buffer 0 reads the same bytes', async () => {
    const config = configFile('[feature.fs]\nmode = "read"\nreadonly_file_buffer = 0\n', 'toml');
    const r = await exec(config, ['cat', '/srv/conf/app.conf']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from-the-target-conf\n');
  });

  it('verify-config names the keys without effect; a paid-operator key is one line and exit 78', async () => {
    const ok = await runCli([
      'verify-config',
      '-f',
      configFile({ target: `docker/${target.name}`, telemetry: false, agent: { json_log: true, inject_headers: true }, operator: false }),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^notice: telemetry: accepted, no effect here: nothing is ever sent$/m);
    assert.match(ok.stdout, /^notice: agent\.inject_headers: accepted, no effect here: /m);
    assert.doesNotMatch(ok.stdout, /agent\.json_log/, 'json_log is honoured: no notice');
    const refused = await runCli([
      'exec',
      '-f',
      configFile({ target: `docker/${target.name}`, feature: { split_queues: { q: { queue_type: 'SQS' } } } }),
      '--',
      'true',
    ]);
    assert.equal(refused.code, 78);
    const lines = refused.stderr.trim().split('\n');
    assert.equal(lines.length, 1, refused.stderr);
    assert.match(lines[0]!, /feature\.split_queues: needs mirrord's operator/);
  });
});
