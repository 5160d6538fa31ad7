import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, runCli, runPlain } from '../helpers/cli.js';
import { createNetwork, docker, listContainers, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * The vertical slice against real containers: a target on a user-defined network, neighbours that
 * only the target can name, and real programs (redis-cli, python3, node, curl, sh) on the host.
 */
const tag = randomBytes(3).toString('hex');
const REDIS = `redis-${tag}`;
const WEB = `web-${tag}`;
const INSIDE_PORT = 39000 + (parseInt(tag, 16) % 1000);

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
const neighbours: TestContainer[] = [];
let targetName = '';

/** Only this file's target: other test files run beside this one and start agents of their own. */
async function agentsLeft(): Promise<number> {
  return (await listContainers('dev.mirrord.agent')).filter((c) => c.Labels['dev.mirrord.target'] === target.id).length;
}

async function exec(args: string[], cmd: string[], env?: NodeJS.ProcessEnv) {
  return runCli(['exec', '-t', `docker/${targetName}`, ...args, '--', ...cmd], { env });
}

describe('mirrord exec -t docker/NAME', { timeout: 600_000 }, () => {
  before(async () => {
    network = await createNetwork('mirrord-e2e');
    neighbours.push(
      await runContainer({
        name: 'e2e-redis',
        network: network.name,
        aliases: [REDIS],
        cmd: ['redis-server', '--protected-mode', 'no'],
        waitFor: { tcpPort: 6379 },
      }),
    );
    neighbours.push(
      await runContainer({
        name: 'e2e-web',
        network: network.name,
        aliases: [WEB],
        cmd: ['sh', '-c', 'mkdir -p /srv && echo hello-from-neighbour > /srv/index.html && exec python3 -m http.server 8080 --directory /srv'],
        waitFor: { tcpPort: 8080 },
      }),
    );
    target = await runContainer({
      name: 'e2e-target',
      network: network.name,
      env: { TARGET_VAR: 'target-value', TARGET_OTHER: 'other', APP_MODE: 'remote', PATH: '/target-only/bin:/usr/local/bin:/usr/bin:/bin' },
      cmd: [
        'sh',
        '-c',
        `mkdir -p /inside && echo only-inside-target > /inside/index.html && exec python3 -m http.server ${INSIDE_PORT} --bind 127.0.0.1 --directory /inside`,
      ],
      waitFor: { tcpPort: INSIDE_PORT },
    });
    targetName = target.name;
  });

  after(async () => {
    for (const c of [target, ...neighbours]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it('redis-cli reaches a neighbour by a name only the target can resolve', async () => {
    const plain = await runPlain('redis-cli', ['-h', REDIS, 'ping']);
    assert.doesNotMatch(plain.stdout, /PONG/, 'the neighbour name must not resolve on the host');
    const r = await exec([], ['redis-cli', '-h', REDIS, 'ping']);
    assert.equal(r.stdout.trim(), 'PONG', r.stderr);
    assert.equal(r.code, 0);
  });

  it('python3 urllib (blocking connect) fetches from a neighbour by name', async () => {
    const r = await exec([], ['python3', '-c', `import urllib.request;print(urllib.request.urlopen("http://${WEB}:8080/").read().decode().strip())`]);
    assert.equal(r.stdout.trim(), 'hello-from-neighbour', r.stderr);
  });

  it('node http.get (non-blocking connect, threadpool getaddrinfo) fetches by name', async () => {
    const script = `require("http").get("http://${WEB}:8080/", (res) => { let b = ""; res.on("data", (d) => (b += d)); res.on("end", () => console.log(res.statusCode, b.trim())); }).on("error", (e) => { console.error(e.message); process.exit(3); });`;
    const r = await exec([], ['node', '-e', script]);
    assert.equal(r.stdout.trim(), '200 hello-from-neighbour', r.stderr);
  });

  it("127.0.0.1 is the target's own localhost", async () => {
    const r = await exec([], ['curl', '-sS', '--max-time', '10', `http://127.0.0.1:${INSIDE_PORT}/`]);
    assert.equal(r.stdout.trim(), 'only-inside-target', r.stderr);
  });

  it('a child process started through a shell is intercepted too', async () => {
    const r = await exec([], ['sh', '-c', `python3 -c 'import socket;print(socket.gethostbyname("${REDIS}").count("."))' && redis-cli -h ${REDIS} ping`]);
    assert.deepEqual(r.stdout.trim().split('\n'), ['3', 'PONG'], r.stderr);
  });

  it("merges the target's environment but keeps PATH local", async () => {
    const r = await exec([], ['sh', '-c', 'echo "$TARGET_VAR|$APP_MODE|$PATH"']);
    const [value, mode, pathVar] = r.stdout.trim().split('|');
    assert.equal(value, 'target-value', r.stderr);
    assert.equal(mode, 'remote');
    assert.equal(pathVar, process.env.PATH);
  });

  it('include, exclude, override and env_file behave as documented', async () => {
    const show = ['sh', '-c', 'echo "${TARGET_VAR:-unset}|${TARGET_OTHER:-unset}|${APP_MODE:-unset}|${FROM_FILE:-unset}"'];
    assert.equal((await exec(['-s', 'TARGET_*'], show)).stdout.trim(), 'target-value|other|unset|unset');
    assert.equal((await exec(['-x', 'TARGET_VAR;APP_*'], show)).stdout.trim(), 'unset|other|unset|unset');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'x.env'), 'FROM_FILE=file-value\nAPP_MODE=from-file\n');
    writeFileSync(path.join(dir, 'mirrord.json'), JSON.stringify({ feature: { env: { override: { TARGET_OTHER: 'overridden' } } } }));
    const r = await exec(['--env-file', path.join(dir, 'x.env'), '-f', path.join(dir, 'mirrord.json')], show);
    assert.equal(r.stdout.trim(), 'target-value|overridden|from-file|file-value', r.stderr);
  });

  it('ignore_localhost, --no-outgoing and --no-remote-dns keep traffic local', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'mirrord.json'), JSON.stringify({ feature: { network: { outgoing: { ignore_localhost: true } } } }));
    const curl = ['curl', '-sS', '--max-time', '5', `http://127.0.0.1:${INSIDE_PORT}/`];
    const local = await exec(['-f', path.join(dir, 'mirrord.json')], curl);
    assert.notEqual(local.code, 0, 'the host has nothing on that port, so a local connect must fail');
    assert.notEqual((await exec(['--no-outgoing'], curl)).code, 0);
    const dns = await exec(['--no-remote-dns'], ['redis-cli', '-h', REDIS, 'ping']);
    assert.doesNotMatch(dns.stdout, /PONG/);
    writeFileSync(path.join(dir, 'filter.json'), JSON.stringify({ feature: { network: { outgoing: { filter: { local: [`127.0.0.1:${INSIDE_PORT}`] } } } } }));
    assert.notEqual((await exec(['-f', path.join(dir, 'filter.json')], curl)).code, 0);
  });

  it("UDP from the target: a DNS query to the target's own 127.0.0.11 is answered; outgoing.udp false keeps it local", async () => {
    const py = `
import socket, struct
q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in '${REDIS}'.split('.')) + b'\\x00' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect(('127.0.0.11', 53))
s.send(q)
try:
    r, src = s.recvfrom(512)
    print('answer', len(r) > len(q), 'from', src[0], src[1], 'address', '.'.join(str(b) for b in r[-4:]))
except socket.timeout:
    print('no answer')
`;
    const r = await exec([], ['python3', '-c', py]);
    const redisIp = await neighbours[0]!.ip(network.name);
    assert.equal(r.stdout.trim(), `answer True from 127.0.0.11 53 address ${redisIp}`, r.stderr);
    // Unconnected: sendto each time, the answer's source checked as dnspython does.
    const pySendto = py.replace("s.connect(('127.0.0.11', 53))\ns.send(q)", "s.sendto(q, ('127.0.0.11', 53))");
    assert.notEqual(pySendto, py);
    const unconnected = await exec([], ['python3', '-c', pySendto]);
    assert.equal(unconnected.stdout.trim(), `answer True from 127.0.0.11 53 address ${redisIp}`, unconnected.stderr);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'noudp.json'), JSON.stringify({ feature: { network: { outgoing: { udp: false } } } }));
    const local = await exec(['-f', path.join(dir, 'noudp.json')], ['python3', '-c', py]);
    assert.doesNotMatch(local.stdout, /answer True/, 'with UDP local, nothing on this host answers at 127.0.0.11');
  });

  it('skip_processes leaves the named programs untouched, and their children are checked on their own', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'skip.json'), JSON.stringify({ skip_processes: ['curl'] }));
    // The target's own 127.0.0.1:INSIDE_PORT: refused at once on the host, served inside the target.
    const url = `http://127.0.0.1:${INSIDE_PORT}/`;
    const r = await exec(
      ['-f', path.join(dir, 'skip.json')],
      ['sh', '-c', `curl -s -m 5 ${url}; echo "curl=$?"; python3 -c 'import urllib.request as u;print(u.urlopen("${url}").read().decode().strip())'`],
    );
    assert.match(r.stdout, /curl=[1-9]/, 'curl is skipped: it connects on the host, where nothing listens');
    assert.match(r.stdout, /only-inside-target/, 'python3, not skipped, still connects in the target');
  });

  it('warns when the program is statically linked (LD_PRELOAD cannot reach it)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'p.c'), 'int main(void){return 3;}\n');
    execFileSync('gcc', ['-static', '-o', path.join(dir, 'static-prog'), path.join(dir, 'p.c')]);
    const r = await exec([], [path.join(dir, 'static-prog')]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /static-prog is statically linked: LD_PRELOAD cannot intercept it/);
  });

  it("port-forward: a local port reaches a neighbour by the target's name; diagnose latency answers", async () => {
    const port = 16000 + (parseInt(tag, 16) % 1000);
    let stderr = '';
    const child = spawn(process.execPath, [CLI, 'port-forward', '-t', `docker/${targetName}`, '-L', `${port}:${REDIS}:6379`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 30_000;
      while (!stderr.includes('forwarding') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.match(stderr, new RegExp(`forwarding 127\\.0\\.0\\.1:${port} -> ${REDIS}:6379`));
      assert.equal((await runPlain('redis-cli', ['-p', String(port), 'ping'])).stdout.trim(), 'PONG');
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 0);
    assert.equal(await agentsLeft(), 0);

    const d = await runCli(['diagnose', 'latency', '-t', `docker/${targetName}`, '-c', '20', '--output', 'json']);
    assert.equal(d.code, 0, d.stderr);
    const r = JSON.parse(d.stdout) as { roundTrips: number; p50Ms: number; minMs: number; maxMs: number };
    assert.equal(r.roundTrips, 20);
    assert.ok(r.minMs > 0 && r.minMs <= r.p50Ms && r.p50Ms <= r.maxMs);
  });

  it('passes the exit status through, 128 + signal when killed', async () => {
    assert.equal((await exec([], ['sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await exec([], ['sh', '-c', 'kill -TERM $$'])).code, 143);
  });

  it('fails with one clear line and a documented code on bad input', async () => {
    const unknown = await runCli(['exec', '-t', `docker/${targetName}x`, '--', 'true']);
    assert.equal(unknown.code, 65);
    assert.match(unknown.stderr.trim(), /^mirrord: no Docker container named "[^"]+"\. Did you mean docker\//);
    assert.equal(unknown.stderr.trim().split('\n').length, 1);

    const stopped = await runContainer({ name: 'e2e-stopped', cmd: ['sleep', '600'] });
    await stopped.stop();
    const s = await runCli(['exec', '-t', `docker/${stopped.name}`, '--', 'true']);
    await stopped.remove();
    assert.equal(s.code, 65);
    assert.match(s.stderr, /is not running \(exited\)\. Start it first/);

    const down = await runCli(['exec', '-t', `docker/${targetName}`, '--', 'true'], { env: { DOCKER_HOST: 'unix:///tmp/no-such-docker.sock' } });
    assert.equal(down.code, 69);
    assert.match(down.stderr, /cannot reach the Docker engine at unix:\/\/\/tmp\/no-such-docker\.sock/);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ feature: { fs: { mode: 'sideways' } }, agnet: {} }));
    const bad = await runCli(['exec', '-f', path.join(dir, 'bad.json'), '-t', `docker/${targetName}`, '--', 'true']);
    assert.equal(bad.code, 78);
    assert.match(bad.stderr, /feature\.fs\.mode: expected one of/);
    assert.match(bad.stderr, /agnet: unknown key/);

    for (const args of [['exec', '--bogus'], ['exec', '-t', 'docker/..', '--', 'true'], ['bogus']]) {
      const usage = await runCli(args);
      assert.equal(usage.code, 64, args.join(' '));
      assert.match(usage.stderr, /^mirrord: .+\n$/, `one line for ${args.join(' ')}: ${usage.stderr}`);
    }

    const missing = await exec([], ['no-such-program-xyz']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /command not found: no-such-program-xyz/);
    assert.equal(await agentsLeft(), 0, 'no agent container may be left behind by a failed start');
  });

  it('an agent killed mid-session makes remote calls fail fast, never hang, and is reported', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-'));
    const [ready, flag] = [path.join(dir, 'ready'), path.join(dir, 'go')];
    const started = Date.now();
    // The program says when it runs (the session is up), then waits until the agent is dead.
    const run = exec([], ['sh', '-c', `touch ${ready}; while [ ! -f ${flag} ]; do sleep 0.1; done; redis-cli -h ${REDIS} ping; echo "rc=$?"`]);
    const deadline = Date.now() + 30_000;
    while (!existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    try {
      const agents = (await listContainers('dev.mirrord.agent')).filter((c) => c.Labels['dev.mirrord.target'] === target.id);
      assert.equal(agents.length, 1, 'one agent for this target');
      await docker().getContainer(agents[0]!.Id).kill({ signal: 'SIGKILL' });
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      // Whatever failed above, the program must not wait for the file's timeout.
      writeFileSync(flag, '');
    }
    const r = await run;
    assert.doesNotMatch(r.stdout, /PONG/);
    assert.match(r.stdout, /rc=[1-9]/);
    assert.equal(r.code, 0, 'the program itself keeps running and exits its own way');
    assert.match(r.stderr, /lost the link to the agent/);
    assert.ok(Date.now() - started < 30_000, 'nothing may wait on the dead agent');
    assert.equal(await agentsLeft(), 0);
  });

  it('leaves no agent behind, even when the CLI is killed with SIGKILL, and the target untouched', async () => {
    const before = await docker().getContainer(target.id).inspect();
    // The target's processes by name, minus the `ps` that lists them (a shell pipeline here would
    // count itself differently from run to run).
    const processes = async () =>
      (await target.exec(['ps', '-eo', 'comm='])).stdout
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && l !== 'ps')
        .sort()
        .join(',');
    const procsBefore = await processes();
    let pid = 0;
    const run = runCli(['exec', '-t', `docker/${targetName}`, '--', 'sleep', '30'], { onSpawn: (c) => (pid = c.pid ?? 0) });
    // Killed mid-session, once the program runs: a CLI killed between creating the agent container and
    // starting it leaves a container that never ran (the next session's reaper removes it), another case.
    const programRuns = () => {
      try {
        return execFileSync('ps', ['-o', 'comm=', '--ppid', String(pid)], { encoding: 'utf8' })
          .split('\n')
          .includes('sleep');
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 30_000;
    while (!(pid && programRuns()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await agentsLeft(), 1, 'the agent should be running during the session');
    process.kill(pid, 'SIGKILL');
    await run;
    const gone = Date.now() + 20_000;
    while ((await agentsLeft()) > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await agentsLeft(), 0, 'the agent must go away when its CLI dies');
    const afterInspect = await docker().getContainer(target.id).inspect();
    assert.equal(afterInspect.State.Running, true);
    assert.equal(afterInspect.State.StartedAt, before.State.StartedAt);
    assert.equal(afterInspect.RestartCount, before.RestartCount);
    assert.equal(await processes(), procsBefore, 'no process left in the target');
  });
});
