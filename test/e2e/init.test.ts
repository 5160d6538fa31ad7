import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { type InitFlags } from '../../src/commands/init.js';
import { runInit } from '../helpers/init.js';
import { runCli } from '../helpers/cli.js';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * `mirrord init` against real containers of the engine. The command is not registered in src/cli.ts
 * yet, so it runs in-process, or (for exit codes and stderr) in a child through a small wrapper that
 * turns a MirrordError into its line and code the way the CLI does; `mirrord verify-config` is the
 * real, built CLI.
 */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-init-e2e-'));
let seq = 0;
const freshDir = () => path.join(work, `d${++seq}`);

const WRAPPER = `
import { initCommand } from ${JSON.stringify(path.join(repo, 'src/commands/init.ts'))};
import { createLogger } from ${JSON.stringify(path.join(repo, 'common/log.ts'))};
try {
  process.exitCode = await initCommand(JSON.parse(process.argv[1]), createLogger(), (s) => process.stdout.write(s + '\\n'));
} catch (err) {
  if (typeof err?.oneLine !== 'function') throw err;
  process.stderr.write(err.oneLine() + '\\n');
  process.exitCode = err.code;
}
`;

/** initCommand in a child process: its exit code, stdout and stderr. */
function initInChild(flags: InitFlags, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', WRAPPER, JSON.stringify(flags)], {
    cwd: repo,
    env: { ...process.env, MIRRORD_LOG: 'warn', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const init = runInit;

describe('mirrord init against Docker containers', { timeout: 300_000 }, () => {
  let web: TestContainer;
  let api: TestContainer;
  let stopped: TestContainer;

  before(async () => {
    [web, api, stopped] = await Promise.all([
      runContainer({ name: 'e2e-init-web', cmd: ['sleep', 'infinity'] }),
      runContainer({ name: 'e2e-init-api', cmd: ['sleep', 'infinity'] }),
      runContainer({ name: 'e2e-init-stopped', cmd: ['sleep', 'infinity'] }),
    ]);
    await stopped.stop();
  });

  after(async () => {
    await Promise.all([web, api, stopped].map((c) => c?.remove().catch(() => undefined)));
    rmSync(work, { recursive: true, force: true });
  });

  it('writes a mirrord.json that the real `mirrord verify-config -f` accepts', async () => {
    const dir = freshDir();
    const r = await init({ target: [`docker/${web.name}`], dir });
    assert.equal(r.code, 0);
    assert.deepEqual(r.out, []);
    assert.deepEqual(r.err, [`mirrord: wrote ${path.join(dir, 'mirrord.json')}`]);
    const file = path.join(dir, 'mirrord.json');
    const v = await runCli(['verify-config', '-f', file, '--output', 'json']);
    assert.equal(v.code, 0, v.stderr);
    const answer = JSON.parse(v.stdout) as { type: string; config: { target: string }; warnings: string[] };
    assert.equal(answer.type, 'Success');
    assert.equal(answer.config.target, `docker/${web.name}`);
    assert.deepEqual(answer.warnings, []);
    const text = await runCli(['verify-config', '-f', file]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^config OK: /);
  });

  it('a container given by ID is written by its name', async () => {
    const dir = freshDir();
    await init({ target: [`docker/${api.id.slice(0, 12)}`], dir });
    const json = JSON.parse(readFileSync(path.join(dir, 'mirrord.json'), 'utf8')) as { target: string };
    assert.equal(json.target, `docker/${api.name}`);
    // Its ID and its name are one target: one service, not two.
    const both = freshDir();
    await init({ target: [`docker/${api.id}`, `docker/${api.name}`], up: true, dir: both });
    const up = parseYaml(readFileSync(path.join(both, 'mirrord-up.yaml'), 'utf8')) as { services: Record<string, unknown> };
    assert.deepEqual(Object.keys(up.services), [api.name]);
  });

  it('several -t: mirrord-up.yaml with one service per container, and mirrord.json for the first', async () => {
    const dir = freshDir();
    const r = initInChild({ target: [`docker/${web.name}`, `docker/${api.name}`], dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.stderr.trim().split('\n'), [`mirrord: wrote ${path.join(dir, 'mirrord.json')}`, `mirrord: wrote ${path.join(dir, 'mirrord-up.yaml')}`]);
    const up = parseYaml(readFileSync(path.join(dir, 'mirrord-up.yaml'), 'utf8')) as {
      services: Record<string, { target: string; default_mode: string; run: { type: string; command: string[] } }>;
    };
    assert.deepEqual(Object.keys(up.services), [web.name, api.name]);
    assert.equal(up.services[api.name]!.target, `docker/${api.name}`);
    assert.equal(up.services[api.name]!.default_mode, 'split');
    assert.equal(up.services[api.name]!.run.type, 'exec');
    const v = await runCli(['verify-config', '-f', path.join(dir, 'mirrord.json')]);
    assert.equal(v.code, 0, v.stderr);
  });

  it('--compose prints x-mirrord for the service a container matches and touches no file', async () => {
    const dir = freshDir();
    const compose = path.join(work, `compose-${seq}.yaml`);
    const text = `services:\n  ${web.name}:\n    image: x\n  other:\n    image: y\n`;
    writeFileSync(compose, text);
    const r = initInChild({ target: [`docker/${web.name}`], compose, dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const x = parseYaml(r.stdout) as { 'x-mirrord': unknown; services: Record<string, { 'x-mirrord': { target: string } }> };
    assert.ok(x['x-mirrord']);
    assert.deepEqual(Object.keys(x.services), [web.name]);
    assert.equal(x.services[web.name]!['x-mirrord'].target, `docker/${web.name}`);
    assert.equal(readFileSync(compose, 'utf8'), text);
    assert.equal(existsSync(dir), false);
  });

  it('a missing container: exit 65, one line with a hint, nothing written', () => {
    const dir = freshDir();
    const typo = `${web.name.slice(0, -1)}x`;
    const r = initInChild({ target: [`docker/${api.name}`, `docker/${typo}`], dir, up: true });
    assert.equal(r.code, 65, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^mirrord: no Docker container named "${typo}"\\. Did you mean docker/${web.name}\\?$`));
    assert.equal(existsSync(dir), false);
  });

  it('a stopped container: exit 65, one line', () => {
    const r = initInChild({ target: [`docker/${stopped.name}`], dir: freshDir() });
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, new RegExp(`^mirrord: container "${stopped.name}" is not running \\(exited\\)\\. Start it first .*\\n$`));
  });

  it('an engine that does not answer: exit 69, one line', () => {
    const r = initInChild({ target: [`docker/${web.name}`], dir: freshDir() }, { DOCKER_HOST: `unix://${path.join(work, 'no-engine.sock')}` });
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /^mirrord: cannot reach the Docker engine at unix:\/\/.*no-engine\.sock \(ENOENT\)\. Start Docker .*\n$/);
  });

  it('an existing file: exit 64 naming it, unless --force', async () => {
    const dir = freshDir();
    await init({ target: [`docker/${web.name}`], dir });
    const r = initInChild({ target: [`docker/${api.name}`], dir });
    assert.equal(r.code, 64);
    assert.equal(r.stderr, `mirrord: ${path.join(dir, 'mirrord.json')} already exists. Pass --force to overwrite it, or --dir DIR to write elsewhere\n`);
    const forced = initInChild({ target: [`docker/${api.name}`], dir, force: true });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((JSON.parse(readFileSync(path.join(dir, 'mirrord.json'), 'utf8')) as { target: string }).target, `docker/${api.name}`);
    assert.deepEqual(readdirSync(dir), ['mirrord.json']);
  });
});
