import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { MIN_COMPOSE, checkCompose, compareComposeVersions, parseComposeVersion } from '../../src/compose/version.js';
import { RUN_ID, TEST_LABEL, docker, listContainers, toolsImage } from '../helpers/docker-fixtures.js';

/**
 * The Docker Compose v2 that `mirrord up` drives works on this machine: scripts/ensure-compose.sh
 * (run by test/run-all.sh before this tier; run again here, a no-op then) leaves a `docker compose`
 * >= MIN_COMPOSE, and a two-service project from the test tools image comes up with `--wait`, the
 * second service reaches the first by its service name, and `down -v` leaves nothing behind.
 */
const exec = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// A cold build of the plugin takes 2-4 minutes on 2 cores; the tools image may need building too.
const TIMEOUT = 10 * 60_000;

const project = `mirrord-compose-test-${randomBytes(4).toString('hex')}`;
const nonce = randomBytes(8).toString('hex');
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-compose-'));
const composeFile = path.join(dir, 'compose.yaml');

function compose(args: string[], timeout = 180_000) {
  return exec('docker', ['compose', '-p', project, '-f', composeFile, ...args], { timeout, encoding: 'utf8', maxBuffer: 16 << 20 });
}

/** The project: every container, the default network and the volume carry TEST_LABEL, so cleanup.ts reaps a crash's leftovers. */
function composeYaml(image: string): string {
  const labels = `      ${TEST_LABEL}: ${JSON.stringify(RUN_ID)}\n`;
  return [
    'services:',
    '  server:',
    `    image: ${JSON.stringify(image)}`,
    '    pull_policy: never',
    '    init: true',
    '    labels:',
    labels.trimEnd(),
    '    volumes: ["data:/srv"]',
    `    command: ["sh", "-c", "mkdir -p /srv && echo hello-${nonce} >/srv/index.html && cd /srv && exec python3 -m http.server 8080"]`,
    '    healthcheck:',
    '      test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/"]',
    '      interval: 1s',
    '      timeout: 3s',
    '      retries: 60',
    '  client:',
    `    image: ${JSON.stringify(image)}`,
    '    pull_policy: never',
    '    init: true',
    '    labels:',
    labels.trimEnd(),
    '    depends_on:',
    '      server:',
    '        condition: service_healthy',
    '    command: ["sleep", "infinity"]',
    // Healthy only once it reaches the server by its service name: `up --wait` waits for that.
    '    healthcheck:',
    '      test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://server:8080/"]',
    '      interval: 1s',
    '      timeout: 3s',
    '      retries: 60',
    'networks:',
    '  default:',
    '    labels:',
    labels.trimEnd(),
    'volumes:',
    '  data:',
    '    labels:',
    labels.trimEnd(),
    '',
  ].join('\n');
}

async function down(): Promise<void> {
  await compose(['down', '-v', '--remove-orphans', '--timeout', '2']).catch(() => undefined);
}

describe('docker compose on this machine', { timeout: TIMEOUT }, () => {
  before(async () => {
    writeFileSync(composeFile, composeYaml(await toolsImage()));
  });
  after(async () => {
    await down();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`scripts/ensure-compose.sh leaves a docker compose >= ${MIN_COMPOSE} (a no-op once it is there)`, async () => {
    await exec('bash', [path.join(REPO_ROOT, 'scripts/ensure-compose.sh')], { timeout: TIMEOUT - 60_000, encoding: 'utf8' });
    const v = await checkCompose();
    assert.ok(compareComposeVersions(v, parseComposeVersion(MIN_COMPOSE)!) >= 0, `docker compose ${v.text}`);
    const again = await exec('bash', [path.join(REPO_ROOT, 'scripts/ensure-compose.sh')], { timeout: 60_000, encoding: 'utf8' });
    assert.match(again.stderr, /^ensure-compose: docker compose \S+ is installed \(>= 2\.20\.0\): nothing to do\n$/);
  });

  it('up --wait starts both services in order; the second reaches the first by service name; down -v removes all', async () => {
    await compose(['up', '-d', '--wait', '--wait-timeout', '120']);
    const ps = await compose(['ps', '--format', 'json']);
    // One JSON object a line (v2.21+), or one array (older v2).
    const rows = ps.stdout.trim().startsWith('[')
      ? (JSON.parse(ps.stdout) as { Service: string; State: string; Health: string }[])
      : ps.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { Service: string; State: string; Health: string });
    assert.deepEqual(rows.map((r) => `${r.Service}:${r.State}:${r.Health}`).sort(), ['client:running:healthy', 'server:running:healthy']);
    const got = await compose(['exec', '-T', 'client', 'curl', '-fsS', 'http://server:8080/']);
    assert.equal(got.stdout.trim(), `hello-${nonce}`);

    const mine = await listContainers(`com.docker.compose.project=${project}`);
    assert.equal(mine.length, 2);
    for (const c of mine) assert.equal(c.Labels[TEST_LABEL], RUN_ID, `${c.Names.join(',')} carries ${TEST_LABEL}`);
    // depends_on with service_healthy: the client starts only after the server is healthy.
    const started = async (service: string) => {
      const c = mine.find((m) => m.Labels['com.docker.compose.service'] === service)!;
      return Date.parse((await docker().getContainer(c.Id).inspect()).State.StartedAt);
    };
    assert.ok((await started('server')) < (await started('client')), 'server started before client');
    const vols = () => exec('docker', ['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`], { encoding: 'utf8' });
    assert.equal((await vols()).stdout.trim(), `${project}_data`);

    await compose(['down', '-v', '--remove-orphans', '--timeout', '2']);
    assert.deepEqual(await listContainers(`com.docker.compose.project=${project}`), []);
    const nets = await exec('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`], { encoding: 'utf8' });
    assert.equal(nets.stdout.trim(), '', 'the project network is gone');
    assert.equal((await vols()).stdout.trim(), '', 'down -v removed the volume');
  });
});
