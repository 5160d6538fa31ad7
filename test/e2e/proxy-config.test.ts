/**
 * Issue 17's proxy and container keys end to end, with the real CLI, layer, agent and sidecar on
 * real Docker: feature.network.incoming.ignore_localhost (a loopback listener is not subscribed, a
 * wildcard one is), internal_proxy's log, idle timeouts, socket timeout and process log,
 * external_proxy's relay log, and container.cli_extra_args on the sidecar.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, runPlain } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';
import { killGroups, startMirrord, stopMirrord, until } from '../helpers/incoming.js';
import { sessionContainers, waitSessionGone } from '../helpers/sessions.js';

const tag = randomBytes(3).toString('hex');
const LOOPBACK_PORT = 8080;
const WILDCARD_PORT = 8081;
// The target answers on both ports with its own name.
const TARGET_APP = `for (const p of [${LOOPBACK_PORT}, ${WILDCARD_PORT}]) require('http').createServer((q, s) => s.end('from-target ' + p)).listen(p)`;
let dir = '';
let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;

function file(name: string, content: unknown): string {
  const f = path.join(dir, name);
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

function exec(config: string, cmd: string[], timeoutMs = 90_000, env?: NodeJS.ProcessEnv) {
  return runCli(['exec', '-t', `docker/${target.name}`, '-f', config, '--', ...cmd], { timeoutMs, env });
}

async function curl(port: number): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', '5', `http://${target.name}:${port}/`])).stdout;
}

describe('proxy and container keys of mirrord config', { timeout: 600_000 }, () => {
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-proxycfg-'));
    network = await createNetwork('mirrord-proxycfg');
    target = await runContainer({ name: `pc-target-${tag}`, network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: WILDCARD_PORT } });
    client = await runContainer({ name: `pc-client-${tag}`, network: network.name, cmd: ['sleep', '100000'] });
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('incoming.ignore_localhost: a 127.0.0.1 listener is not subscribed (the target answers), a 0.0.0.0 one is', async () => {
    const server = file(
      'two-listeners.js',
      `const http = require('http');
http.createServer((q, s) => s.end('from-local ${LOOPBACK_PORT}')).listen(${LOOPBACK_PORT}, '127.0.0.1', () => console.log('up loopback'));
http.createServer((q, s) => s.end('from-local ${WILDCARD_PORT}')).listen(${WILDCARD_PORT}, '0.0.0.0', () => console.log('up wildcard'));`,
    );
    const run = async (ignore: boolean) => {
      const cfg = file(`steal-${ignore}.json`, { feature: { network: { incoming: { mode: 'steal', ignore_localhost: ignore } } } });
      const r = startMirrord(target.name, ['-f', cfg], ['node', server]);
      try {
        await until('the wildcard listener to be stolen', async () => (await curl(WILDCARD_PORT)) === `from-local ${WILDCARD_PORT}`, 60_000);
        return await curl(LOOPBACK_PORT);
      } finally {
        await stopMirrord(r);
      }
    };
    assert.equal(await run(true), `from-target ${LOOPBACK_PORT}`, 'with ignore_localhost the loopback listener must stay local');
    // The same program without the key: the loopback listener is stolen too, so the key is what changed it.
    assert.equal(await run(false), `from-local ${LOOPBACK_PORT}`);
    assert.equal(await curl(LOOPBACK_PORT), `from-target ${LOOPBACK_PORT}`);
  });

  it('internal_proxy.log_destination, log_level, json_log and process_logging_interval shape the intproxy log', async () => {
    const logDir = path.join(dir, 'logs', 'nested') + '/';
    const program = ['python3', '-c', 'import time; open("/etc/hostname").read(); time.sleep(2.5)'];
    const debug = await exec(
      file('log-debug.json', { internal_proxy: { log_destination: logDir, log_level: 'mirrord=debug,warn', json_log: true, process_logging_interval: 1 } }),
      program,
    );
    assert.equal(debug.code, 0, debug.stderr);
    const files = readdirSync(logDir);
    assert.equal(files.length, 1, String(files));
    assert.match(files[0]!, /^mirrord-intproxy-[0-9a-f]+\.log$/);
    const lines = readFileSync(path.join(logDir, files[0]!), 'utf8').trim().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as { timestamp: string; level: string; target: string; fields: { message: string } });
    assert.ok(
      entries.some((e) => e.level === 'DEBUG' && /^layer connected: pid \d+ .*python3/.test(e.fields.message)),
      lines.join('\n'),
    );
    assert.ok(
      entries.some((e) => e.level === 'INFO' && /^connected: pid \d+ .*python3.*, for \d+ s$/.test(e.fields.message)),
      lines.join('\n'),
    );
    assert.ok(entries.every((e) => !Number.isNaN(Date.parse(e.timestamp)) && e.target.startsWith('mirrord-intproxy')));
    // Nothing of the intproxy's went to the CLI's stderr.
    assert.doesNotMatch(debug.stderr, /layer connected/);

    const warnFile = path.join(dir, 'warn.log');
    const warn = await exec(file('log-warn.json', { internal_proxy: { log_destination: warnFile, log_level: 'warn', process_logging_interval: 1 } }), program);
    assert.equal(warn.code, 0, warn.stderr);
    assert.ok(existsSync(warnFile));
    assert.doesNotMatch(readFileSync(warnFile, 'utf8'), /info:|debug:/, 'log_level warn filters info and debug');
  });

  it('internal_proxy.start_idle_timeout and idle_timeout end the session; the program runs on', async () => {
    // `sleep` is skipped: no process ever connects.
    const never = await exec(file('start-idle.json', { internal_proxy: { start_idle_timeout: 2 }, skip_processes: 'sleep' }), [
      'sh',
      '-c',
      'exec sleep 4; echo unreachable',
    ]);
    assert.equal(never.code, 0, never.stderr);
    assert.match(never.stderr, /the session ended: no process of the program connected to the intproxy within 2 s \(internal_proxy\.start_idle_timeout\)/);
    // sh connects, reads the target's host name, then execs a program without the layer: the intproxy is idle.
    const chain = ['sh', '-c', 'cat /etc/hostname; exec env -u LD_PRELOAD sh -c "sleep 3; echo still-running"'];
    const idle = await exec(file('idle.json', { internal_proxy: { idle_timeout: 1 } }), chain);
    assert.equal(idle.code, 0, idle.stderr);
    assert.equal(idle.stdout, `${(await target.exec(['hostname'])).stdout.trim()}\nstill-running\n`);
    assert.match(idle.stderr, /the session ended: no process of the program was connected to the intproxy for 1 s \(internal_proxy\.idle_timeout\)/);
    // Without the key the session lasts as long as the program.
    const plain = await exec(file('no-idle.json', {}), chain);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /session ended/);
  });

  it('internal_proxy.socket_timeout closes a connection without requests', async () => {
    const log = path.join(dir, 'socket-timeout.log');
    const r = await exec(file('socket-timeout.json', { internal_proxy: { socket_timeout: 1, log_destination: log, log_level: 'info' } }), [
      'python3',
      '-c',
      'import time; open("/etc/hostname").read(); time.sleep(2.5)',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(log, 'utf8'), /pid \d+ .*python3.*: no request for 1 s \(internal_proxy\.socket_timeout\): closing its connection/);
    const without = path.join(dir, 'no-socket-timeout.log');
    await exec(file('no-socket-timeout.json', { internal_proxy: { log_destination: without, log_level: 'info' } }), [
      'python3',
      '-c',
      'import time; open("/etc/hostname").read(); time.sleep(2.5)',
    ]);
    assert.doesNotMatch(readFileSync(without, 'utf8'), /socket_timeout/);
  });

  it('container: internal_proxy.idle_timeout ends the session in the sidecar; the container runs on and nothing is left', async () => {
    const image = await toolsImage();
    let pid = 0;
    const r = await runCli(
      [
        'container',
        '-t',
        `docker/${target.name}`,
        '-f',
        file('container-idle.json', { internal_proxy: { idle_timeout: 1 } }),
        '--',
        'docker',
        'run',
        '--rm',
        image,
        'sh',
        '-c',
        'cat /etc/hostname; exec env -u LD_PRELOAD sh -c "sleep 3; echo still-running"',
      ],
      { timeoutMs: 120_000, onSpawn: (c) => (pid = c.pid!) },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${(await target.exec(['hostname'])).stdout.trim()}\nstill-running\n`);
    assert.match(r.stderr, /the session ended: no process of the program was connected to the intproxy for 1 s \(internal_proxy\.idle_timeout\)/);
    assert.deepEqual(await waitSessionGone(pid), []);
  });

  it('internal_proxy.ping_interval: a frozen agent is lost after the default 15 s, and only after 3 intervals with a longer one', async () => {
    const hostname = (await target.exec(['hostname'])).stdout.trim();
    const frozen = async (name: string, config: unknown) => {
      const r = startMirrord(target.name, ['-f', file(name, config)], ['sh', '-c', 'cat /etc/hostname; sleep 22; echo end']);
      // The session is up once the program has read the target's host name.
      await until('the program to read a remote file', async () => Promise.resolve(r.out().includes(hostname)), 90_000);
      const agent = (await sessionContainers(r.child.pid!)).find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      assert.ok(agent, 'the session has an agent container');
      // Every process of the agent frozen: its link goes silent without closing.
      await docker().getContainer(agent.Id).pause();
      assert.equal(await r.done, 0, r.out());
      assert.match(r.out(), /end\n/);
      return r.out();
    };
    // The default: lost after 15 s of silence, before the program's end.
    assert.match(await frozen('ping-default.json', {}), /lost the link to the agent \(no frame from peer for 1[5-9]\d{3} ms/);
    // Every 10 s: lost only after 30 s, after the program's end.
    assert.doesNotMatch(await frozen('ping-10.json', { internal_proxy: { ping_interval: 10 } }), /lost the link/);
  });

  it('use_proxy: false removes the proxy variables before the program inherits them', async () => {
    const env = { HTTPS_PROXY: 'http://proxy.invalid:3128', http_proxy: 'http://proxy.invalid:3128' };
    const show = ['sh', '-c', 'echo "${HTTPS_PROXY-none} ${http_proxy-none}"'];
    const off = await exec(file('no-proxy.json', { use_proxy: false }), show, 90_000, env);
    assert.equal(off.code, 0, off.stderr);
    assert.equal(off.stdout, 'none none\n');
    const on = await exec(file('proxy.json', { use_proxy: true }), show, 90_000, env);
    assert.equal(on.stdout, 'http://proxy.invalid:3128 http://proxy.invalid:3128\n', on.stderr);
  });

  it('container.cli_extra_args: a label, an env var and a host entry are on the sidecar; both proxies log to their files', async () => {
    const image = await toolsImage();
    const intLog = path.join(dir, 'sidecar-intproxy.log');
    const extLog = path.join(dir, 'relay.log');
    const cfg = file('container.json', {
      container: { cli_extra_args: ['--label', `pc.test=${tag}`, '-e', `PC_VAR=${tag}`, '--add-host', `pc-host-${tag}:10.9.8.7`, '--memory=256m'] },
      internal_proxy: { log_destination: intLog, log_level: 'debug' },
      external_proxy: { log_destination: extLog, log_level: 'info' },
    });
    let pid = 0;
    const running = runCli(
      ['container', '-t', `docker/${target.name}`, '-f', cfg, '--', 'docker', 'run', '--rm', image, 'sh', '-c', `getent hosts pc-host-${tag}; sleep 4`],
      { timeoutMs: 120_000, onSpawn: (c) => (pid = c.pid!) },
    );
    let sidecarEnv: string[] = [];
    let sidecarLabels: Record<string, string> = {};
    let sidecarMemory = 0;
    let sidecarHosts = '';
    await until(
      'the sidecar with the label',
      async () => {
        const sidecar = (await sessionContainers(pid)).find((c) => c.Labels['dev.mirrord.agent'] === 'sidecar');
        if (!sidecar) return false;
        // A sidecar of an earlier case may be listed while the engine removes it: poll on.
        const info = await docker()
          .getContainer(sidecar.Id)
          .inspect()
          .catch(() => undefined);
        if (!info) return false;
        sidecarEnv = info.Config.Env;
        sidecarLabels = info.Config.Labels;
        sidecarMemory = info.HostConfig.Memory ?? 0;
        // The engine wrote the host entry into the sidecar's hosts file.
        sidecarHosts = (await runPlain('docker', ['exec', sidecar.Id, 'cat', '/etc/hosts'])).stdout;
        return true;
      },
      60_000,
    );
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sidecarLabels['pc.test'], tag);
    assert.ok(sidecarEnv.includes(`PC_VAR=${tag}`), sidecarEnv.join(' '));
    assert.equal(sidecarMemory, 256 * 1024 * 1024);
    assert.match(sidecarHosts, new RegExp(`^10\\.9\\.8\\.7\\s+pc-host-${tag}$`, 'm'));
    assert.match(readFileSync(intLog, 'utf8'), /\[mirrord-intproxy\] debug: layer connected: pid \d+/);
    const relay = readFileSync(extLog, 'utf8');
    assert.match(relay, /info: relaying container [0-9a-f]{12} \(sidecar of session [0-9a-f]+\)/);
    assert.match(relay, /info: relay closing: \d+ bytes to the agent, \d+ to the sidecar/);

    const refused = await runCli(['verify-config', '-f', file('bad-args.json', { container: { cli_extra_args: ['--name', 'mine'] } })]);
    assert.equal(refused.code, 78);
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    assert.match(refused.stderr, /container\.cli_extra_args: docker run --name is not taken for the sidecar/);
  });
});
