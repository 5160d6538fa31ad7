import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { MIN_COMPOSE, checkCompose, compareComposeVersions, parseComposeVersion, type Runner } from '../../src/compose/version.js';

describe('parseComposeVersion', () => {
  const cases: [string, { major: number; minor: number; patch: number; text: string } | undefined][] = [
    ['Docker Compose version v2.29.1\n', { major: 2, minor: 29, patch: 1, text: '2.29.1' }],
    ['2.29.1\n', { major: 2, minor: 29, patch: 1, text: '2.29.1' }],
    ['v2.29.1-desktop.1', { major: 2, minor: 29, patch: 1, text: '2.29.1-desktop.1' }],
    ['Docker Compose version v2.29.1-desktop.1\n', { major: 2, minor: 29, patch: 1, text: '2.29.1-desktop.1' }],
    ['docker-compose version 1.29.2, build unknown\n', { major: 1, minor: 29, patch: 2, text: '1.29.2' }],
    ['docker-compose version 1.25.0, build 0a186604\ndocker-py version: 4.1.0\nCPython version: 3.7.4\n', { major: 1, minor: 25, patch: 0, text: '1.25.0' }],
    ['Docker Compose version v2.40.3\n', { major: 2, minor: 40, patch: 3, text: '2.40.3' }],
    ['2.20', { major: 2, minor: 20, patch: 0, text: '2.20' }],
    ['\r\nDocker Compose version 2.24.6+ds1-0ubuntu1\r\n', { major: 2, minor: 24, patch: 6, text: '2.24.6+ds1-0ubuntu1' }],
    ['Docker Compose version dev', undefined],
    ['docker: unknown command: docker compose', undefined],
    ['', undefined],
    ['build 10.2.3x', undefined],
  ];
  for (const [text, want] of cases) {
    it(JSON.stringify(text), () => assert.deepEqual(parseComposeVersion(text), want));
  }

  it('compares by major, minor, patch, ignoring suffixes', () => {
    const v = (s: string) => parseComposeVersion(s)!;
    assert.ok(compareComposeVersions(v('2.19.9'), v(MIN_COMPOSE)) < 0);
    assert.equal(compareComposeVersions(v('v2.20.0-desktop.1'), v(MIN_COMPOSE)), 0);
    assert.ok(compareComposeVersions(v('2.100.0'), v('2.29.1')) > 0, 'numeric, not lexical');
    assert.ok(compareComposeVersions(v('3.0.0'), v('2.99.99')) > 0);
  });
});

/** A runner answering from a table keyed by the arguments; anything else fails like a missing command. */
function fakeRunner(answers: Record<string, string | Error>): Runner & { calls: string[] } {
  const calls: string[] = [];
  const run = (file: string, args: readonly string[]) => {
    const key = `${file} ${args.join(' ')}`;
    calls.push(key);
    const a = answers[key];
    if (a === undefined) return Promise.reject(Object.assign(new Error(`${key}: exit 1`), { code: 1, stderr: "docker: 'compose' is not a docker command." }));
    if (a instanceof Error) return Promise.reject(a);
    return Promise.resolve({ stdout: a, stderr: '' });
  };
  return Object.assign(run, { calls });
}

async function rejectsWith(p: Promise<unknown>, line: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof MirrordError, `not a MirrordError: ${String(err)}`);
    assert.equal(err.code, ExitCode.Platform);
    assert.equal(err.oneLine(), `mirrord: ${line}`);
    return true;
  });
}

describe('checkCompose', () => {
  it('accepts a new enough compose from --short, asking once', async () => {
    const run = fakeRunner({ 'docker compose version --short': '2.29.1\n' });
    assert.deepEqual(await checkCompose(run), { major: 2, minor: 29, patch: 1, text: '2.29.1' });
    assert.deepEqual(run.calls, ['docker compose version --short']);
  });

  it('accepts exactly the minimum, and a desktop build', async () => {
    assert.equal((await checkCompose(fakeRunner({ 'docker compose version --short': 'v2.20.0' }))).text, '2.20.0');
    assert.equal((await checkCompose(fakeRunner({ 'docker compose version --short': 'v2.29.1-desktop.1\n' }))).text, '2.29.1-desktop.1');
  });

  it('falls back to `docker compose version` when --short fails', async () => {
    const run = fakeRunner({ 'docker compose version': 'Docker Compose version v2.24.0\n' });
    assert.equal((await checkCompose(run)).text, '2.24.0');
    assert.deepEqual(run.calls, ['docker compose version --short', 'docker compose version']);
  });

  it('falls back when --short prints nothing usable', async () => {
    const run = fakeRunner({ 'docker compose version --short': '\n', 'docker compose version': 'Docker Compose version v2.30.3\n' });
    assert.equal((await checkCompose(run)).text, '2.30.3');
  });

  it('refuses an old v2 and a v1, naming the version found', async () => {
    await rejectsWith(
      checkCompose(fakeRunner({ 'docker compose version --short': '2.19.1\n' })),
      'docker compose 2.19.1 found; mirrord up needs Docker Compose >= 2.20',
    );
    await rejectsWith(
      checkCompose(fakeRunner({ 'docker compose version': 'docker-compose version 1.29.2, build unknown\n' })),
      'docker compose 1.29.2 found; mirrord up needs Docker Compose >= 2.20',
    );
  });

  it('refuses a compose that answers without a version', async () => {
    await rejectsWith(
      checkCompose(fakeRunner({ 'docker compose version --short': 'dev\n', 'docker compose version': 'Docker Compose version dev\n' })),
      'docker compose dev found; mirrord up needs Docker Compose >= 2.20',
    );
  });

  const notInstalled =
    'docker compose is not installed; mirrord up needs Docker Compose >= 2.20 (the compose plugin of Docker, https://docs.docker.com/compose/install/)';

  it('says compose is not installed when docker has no compose command', async () => {
    const run = fakeRunner({});
    await rejectsWith(checkCompose(run), notInstalled);
    assert.deepEqual(run.calls, ['docker compose version --short', 'docker compose version']);
  });

  it('says compose is not installed when there is no docker CLI at all', async () => {
    const enoent = Object.assign(new Error('spawn docker ENOENT'), { code: 'ENOENT' });
    await rejectsWith(checkCompose(fakeRunner({ 'docker compose version --short': enoent, 'docker compose version': enoent })), notInstalled);
  });
});
