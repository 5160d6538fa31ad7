/**
 * Both data paths end to end (docs/fast-path.md): the real CLI, layer, agent and socket helper
 * against real containers. A neighbour answers every TCP connection and UDP datagram with the
 * address it came from, which must be the target's on either path; the layer's debug log says which
 * path carried it (`socket made in the target`, or `handled via port` for the stream).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

const SERVER = `
import socket, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9000)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 9001))
    while True:
        d, a = u.recvfrom(2048); u.sendto(a[0].encode() + b' ' + d, a)
threading.Thread(target=udp, daemon=True).start()
tcp()
`;
// TCP, a connected UDP socket, an unconnected one: each prints what the neighbour saw.
const CLIENT = `
import socket, sys
host = sys.argv[1]
s = socket.create_connection((host, 9000), timeout=10); print('tcp', s.makefile().readline().strip())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10); u.connect((host, 9001)); u.send(b'ping')
print('udp', u.recv(2048).decode())
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(10); v.sendto(b'pong', (host, 9001))
print('udp-sendto', v.recvfrom(2048)[0].decode())
`;

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let neighbour: TestContainer;
let image = '';
let targetIp = '';
let dir = '';

function fdPassVolumes(): Promise<string[]> {
  return docker()
    .listVolumes({ filters: { label: ['dev.mirrord.fdpass'] } })
    .then((r) => (r.Volumes ?? []).map((v) => v.Name));
}

describe('data paths: fast (fd passing) and stream', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    network = await createNetwork('mirrord-fastpath');
    neighbour = await runContainer({
      name: 'e2e-fp-echo',
      network: network.name,
      aliases: ['fp-echo'],
      cmd: ['python3', '-c', SERVER],
      waitFor: { tcpPort: 9000 },
    });
    target = await runContainer({ name: 'e2e-fp-target', network: network.name, cmd: ['sleep', '100000'] });
    targetIp = await target.ip(network.name);
    dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-fp-'));
    writeFileSync(path.join(dir, 'client.py'), CLIENT);
    writeFileSync(path.join(dir, 'off.json'), JSON.stringify({ agent: { fd_passing: 'off' } }));
  });
  after(async () => {
    await target?.remove();
    await neighbour?.remove();
    await network?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const exec = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runCli(['exec', '-t', `docker/${target.name}`, ...args, '--', 'python3', path.join(dir, 'client.py'), 'fp-echo'], {
      env: { MIRRORD_LOG: 'info', MIRRORD_LAYER_LOG: 'debug', ...env },
      timeoutMs: 120_000,
    });

  it('exec: the fast path by default; TCP and UDP leave from the target', async () => {
    const r = await exec([]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
    assert.match(r.stderr, /data path: fast \(sockets made in the target/);
    assert.equal(r.stderr.match(/socket made in the target -> /g)?.length, 2, r.stderr);
    assert.match(r.stderr, /udp fd \d+: socket made in the target/);
    assert.doesNotMatch(r.stderr, /handled via port/);
  });

  it('exec: MIRRORD_AGENT_FD_PASSING=off, and agent.fd_passing: off, take the stream', async () => {
    for (const [args, env, why] of [
      [[], { MIRRORD_AGENT_FD_PASSING: 'off' }, 'agent.fd_passing is off'],
      [['-f', path.join(dir, 'off.json')], {}, 'agent.fd_passing is off'],
    ] as const) {
      const r = await exec([...args], env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
      assert.ok(r.stderr.includes(`data path: stream (${why})`), r.stderr);
      assert.equal(r.stderr.match(/handled via port/g)?.length, 2, r.stderr);
      assert.doesNotMatch(r.stderr, /socket made in the target/);
    }
  });

  it('container mode: the user container takes sockets over the session volume, which goes with the session', async () => {
    const before = await fdPassVolumes();
    const r = await runCli(
      ['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', '-e', 'MIRRORD_LAYER_LOG=debug', image, 'python3', '-c', CLIENT, 'fp-echo'],
      { env: { MIRRORD_LOG: 'info' }, timeoutMs: 180_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [`tcp ${targetIp}`, `udp ${targetIp} ping`, `udp-sendto ${targetIp} pong`]);
    assert.match(r.stderr, /data path: fast \(container mode/);
    assert.equal(r.stderr.match(/socket made in the target -> /g)?.length, 2, r.stderr);
    // Only this session's volume: the reaper may remove a dead session's one meanwhile.
    assert.deepEqual(
      (await fdPassVolumes()).filter((v) => !before.includes(v)),
      [],
    );
  });

  it('the helper lives in the target (its PID namespace) only as long as the session', async () => {
    const helperRuns = async () => /mirrord-sockhel/.test((await target.exec(['ps', '-eo', 'comm='])).stdout);
    const session = runCli(['exec', '-t', `docker/${target.name}`, '--', 'sleep', '8'], { timeoutMs: 120_000 });
    let seen = false;
    const deadline = Date.now() + 60_000;
    while (!seen && Date.now() < deadline) {
      seen = await helperRuns();
      if (!seen) await new Promise((r) => setTimeout(r, 200));
    }
    const r = await session;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(seen, 'the socket helper never ran in the target during the session');
    const gone = Date.now() + 20_000;
    while ((await helperRuns()) && Date.now() < gone) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await helperRuns(), false, 'the socket helper outlived its agent');
  });
});
