import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { waitSessionGone } from '../helpers/sessions.js';
import { createNetwork, runContainer, staticClientImage, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * container.capture = namespace: a statically linked program (busybox on an empty image: no libc,
 * no loader, so the layer cannot be there) reaches a neighbour by a name only the target's network
 * resolves, and the neighbour sees the target's address as the source.
 */
let network: { name: string; remove(): Promise<void> };
let neighbour: TestContainer;
let target: TestContainer;
let targetIp = '';
let staticImage = '';
let tools = '';
let cfgDir = '';
const NEIGHBOUR = `capture-nb-${process.pid}`;

function withConfig(config: object): string[] {
  const file = path.join(cfgDir, `cfg-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(config));
  return ['-f', file];
}

describe('mirrord container with container.capture = namespace', { timeout: 600_000 }, () => {
  before(async () => {
    [staticImage, tools] = await Promise.all([staticClientImage(), toolsImage()]);
    cfgDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-capture-cfg-'));
    network = await createNetwork('mirrord-capture');
    const server = `require('http').createServer((q, s) => s.end('from ' + q.socket.remoteAddress.replace('::ffff:', ''))).listen(8080)`;
    neighbour = await runContainer({
      name: 'capture-nb',
      network: network.name,
      aliases: [NEIGHBOUR],
      cmd: ['node', '-e', server],
      waitFor: { tcpPort: 8080 },
    });
    target = await runContainer({ name: 'capture-target', network: network.name, cmd: ['sleep', '100000'] });
    targetIp = await target.ip(network.name);
  });

  after(async () => {
    for (const c of [target, neighbour]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
    if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
  });

  it("a static busybox wget reaches a neighbour by a name only the target resolves, from the target's address", async () => {
    let pid = 0;
    const r = await runCli(
      [
        'container',
        ...withConfig({ container: { capture: 'namespace' } }),
        '-t',
        `docker/${target.name}`,
        '--',
        'docker',
        'run',
        '--rm',
        staticImage,
        'wget',
        '-q',
        '-O',
        '-',
        `http://${NEIGHBOUR}:8080/`,
      ],
      { timeoutMs: 120_000, onSpawn: (c) => (pid = c.pid!) },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `from ${targetIp}`);
    assert.deepEqual(await waitSessionGone(pid), []);
  });

  it('a static Go binary (CGO_ENABLED=0: its own resolver and raw connect system calls) reaches the neighbour by name, from the target', async () => {
    // test/e2e/matrix/main.go, built without cgo: Go reads /etc/resolv.conf and dials by itself.
    const src = path.join(path.dirname(fileURLToPath(import.meta.url)), 'matrix');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-capture-go-'));
    try {
      for (const f of ['main.go', 'go.mod']) copyFileSync(path.join(src, f), path.join(dir, f));
      execFileSync('go', ['build', '-o', 'client', '.'], {
        cwd: dir,
        env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
      });
      const r = await runCli(
        [
          'container',
          ...withConfig({ container: { capture: 'namespace' } }),
          '-t',
          `docker/${target.name}`,
          '--',
          'docker',
          'run',
          '--rm',
          '-v',
          `${dir}/client:/client:ro`,
          '--entrypoint',
          '/client',
          staticImage,
          `http://${NEIGHBOUR}:8080/`,
        ],
        { timeoutMs: 120_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `200 from ${targetIp}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without capture the same static program cannot resolve the name (the layer cannot reach it)', async () => {
    const r = await runCli(
      ['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', staticImage, 'wget', '-q', '-O', '-', `http://${NEIGHBOUR}:8080/`],
      {
        timeoutMs: 120_000,
      },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad address/);
  });

  it('a dynamically linked program still works under capture: its layer and the capture never both take one connection', async () => {
    const r = await runCli(
      [
        'container',
        ...withConfig({ container: { capture: 'namespace' } }),
        '-t',
        `docker/${target.name}`,
        '--',
        'docker',
        'run',
        '--rm',
        tools,
        'sh',
        '-c',
        `curl -s http://${NEIGHBOUR}:8080/; echo; python3 -c 'import socket; print(socket.gethostbyname("${NEIGHBOUR}"))'`,
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const [answer, resolved] = r.stdout.trim().split('\n');
    assert.equal(answer, `from ${targetIp}`);
    assert.equal(resolved, await neighbour.ip(network.name));
  });
});
