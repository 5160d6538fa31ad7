import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliResult } from '../helpers/cli.js';
import { sessionContainers, waitSessionGone } from '../helpers/sessions.js';
import { createNetwork, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * Container mode, first increment: `mirrord container -t docker/TARGET -- docker run ...` runs a
 * real image in the target's context through a sidecar (outgoing traffic, DNS, environment).
 */
const tag = randomBytes(3).toString('hex');
const REDIS = `cache-${tag}`;
let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let redis: TestContainer;
let image = '';

/** The CLI, with its pid: what it leaves is found by its owner label, apart from other sessions on the engine. */
async function cli(args: string[], opts: { input?: string } = {}): Promise<CliResult & { pid: number }> {
  let pid = 0;
  const r = await runCli(args, { ...opts, timeoutMs: 120_000, onSpawn: (c) => (pid = c.pid!) });
  return { ...r, pid };
}

describe('mirrord container -- docker run ...', { timeout: 600_000 }, () => {
  before(async () => {
    image = await toolsImage();
    network = await createNetwork('mirrord-container');
    redis = await runContainer({
      name: 'ct-redis',
      network: network.name,
      aliases: [REDIS],
      cmd: ['redis-server', '--protected-mode', 'no'],
      waitFor: { tcpPort: 6379 },
    });
    target = await runContainer({ name: 'ct-target', network: network.name, env: { TARGET_VAR: 'from-target' }, cmd: ['sleep', '100000'] });
  });

  after(async () => {
    for (const c of [target, redis]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it("redis-cli in a local container reaches a neighbour only the target can name, with the target's env", async () => {
    const r = await cli([
      'container',
      '-t',
      `docker/${target.name}`,
      '--',
      'docker',
      'run',
      '--rm',
      image,
      'sh',
      '-c',
      `echo "TARGET_VAR=$TARGET_VAR"; redis-cli -h ${REDIS} ping`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['TARGET_VAR=from-target', 'PONG']);
    assert.deepEqual(await waitSessionGone(r.pid), [], 'no sidecar or agent may remain');
  });

  it("passes the container's exit status through and feeds stdin with -i", async () => {
    const five = await cli(['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', image, 'sh', '-c', 'exit 5']);
    assert.equal(five.code, 5);
    const piped = await cli(
      ['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--rm', '-i', image, 'sh', '-c', 'read line; echo "got $line"'],
      { input: 'hello\n' },
    );
    assert.equal(piped.stdout.trim(), 'got hello', piped.stderr);
    assert.deepEqual(await waitSessionGone(five.pid), []);
    assert.deepEqual(await waitSessionGone(piped.pid), []);
  });

  it('docker run -it works interactively through a pty', async () => {
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('../helpers/cli.js');
    // util-linux `script` gives the CLI a real terminal; what we type reaches the container's shell.
    const child = spawn('script', ['-qec', `${process.execPath} ${CLI} container -t docker/${target.name} -- docker run --rm -it ${image} sh`, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    // Wait for the shell's prompt before typing.
    while (!/[#$] $/m.test(out.replace(/\r/g, '')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    child.stdin!.write('echo "tty=$(tty) var=$TARGET_VAR"; exit 3\r');
    assert.equal(await exited, 3, out);
    assert.match(out, /tty=\/dev\/pts\/\d+ var=from-target/);
  });

  it("refuses docker run flags that cannot share the sidecar's namespace, in one line", async () => {
    const r = await cli(['container', '-t', `docker/${target.name}`, '--', 'docker', 'run', '--network', 'host', image, 'true']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /^mirrord: docker run --network host cannot be combined with mirrord container\. .+\n$/);
    assert.deepEqual(await sessionContainers(r.pid), []);
  });
});

describe('mirrord container --steal', { timeout: 300_000 }, () => {
  it("the local container serving the target's port answers a client that calls the target; the guard covers a killed agent; SIGTERM ends it all", async () => {
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('../helpers/cli.js');
    const img = await toolsImage();
    const net = await createNetwork('mirrord-container-steal');
    const app = `require('http').createServer((q, s) => s.end(process.argv[1])).listen(8080)`;
    const tgt = await runContainer({ name: 'cs-target', network: net.name, cmd: ['node', '-e', app, 'from-target'], waitFor: { tcpPort: 8080 } });
    const client = await runContainer({ name: 'cs-client', network: net.name, cmd: ['sleep', '100000'] });
    const cli = spawn(
      process.execPath,
      [CLI, 'container', '--steal', '-t', `docker/${tgt.name}`, '--', 'docker', 'run', '--rm', img, 'node', '-e', app, 'from-local-container'],
      { stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
    try {
      let answer = '';
      const deadline = Date.now() + 60_000;
      while (answer !== 'from-local-container' && Date.now() < deadline) {
        answer = (await client.exec(['curl', '-s', '-m', '2', `http://${tgt.name}:8080/`])).stdout;
        if (answer !== 'from-local-container') await new Promise((r) => setTimeout(r, 300));
      }
      assert.equal(answer, 'from-local-container');
      // The guard watches the agent here too: kill it, and the target answers its own clients again.
      const ours = await sessionContainers(cli.pid!);
      assert.equal(ours.filter((c) => c.Labels['dev.mirrord.agent'] === 'guard').length, 1, 'a guard runs with the session');
      const { docker } = await import('../helpers/docker-fixtures.js');
      await docker()
        .getContainer(ours.find((c) => c.Labels['dev.mirrord.agent'] === 'true')!.Id)
        .kill({ signal: 'SIGKILL' });
      const back = Date.now() + 10_000;
      while (answer !== 'from-target' && Date.now() < back) {
        answer = (await client.exec(['curl', '-s', '-m', '1', `http://${tgt.name}:8080/`])).stdout;
        if (answer !== 'from-target') await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(answer, 'from-target', "the guard removes the dead agent's rules");
    } finally {
      cli.kill('SIGTERM');
    }
    await exited;
    assert.deepEqual(await waitSessionGone(cli.pid!), [], 'no sidecar, agent or guard may remain');
    assert.equal((await client.exec(['curl', '-s', '-m', '2', `http://${tgt.name}:8080/`])).stdout, 'from-target');
    for (const c of [tgt, client]) await c.remove();
    await net.remove();
  });
});
