/**
 * The agent keys the agent honours itself (agent.json_log, communication_timeout, dns, nftables,
 * flush_connections, disabled_capabilities, metrics, check_out_of_pods): the CLI's environment
 * for them against the agent's reading of it, and each against the real agent code: the built
 * bundle as a process for the link timeout and the JSON log, the DNS service against a nameserver
 * that never answers. The Docker and Kubernetes ends are in test/e2e/agent-keys.test.ts and
 * test/k8s/agent-keys.test.ts.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs/promises';
import os from 'node:os';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentKeysEnv, agentSchema } from '../../src/config/agent-schema.js';
import { readSettings, parseListenAddress, SETTINGS_ENV } from '../../agent/src/settings.js';
import { createLogger, jsonLine } from '../../common/log.js';
import { readableAgentLine } from '../../src/platforms/agent-log.js';
import { DnsService } from '../../agent/src/dns.js';
import { Iptables } from '../../agent/src/incoming/iptables.js';
import { outOfPods } from '../../src/platforms/kubernetes/agent-spec.js';
import { agentCapabilities } from '../../src/platforms/docker/agent.js';
import { encodeHello } from '../../common/protocol/agent/index.js';
import { AgentConnection } from '../../src/agent-link/connection.js';
import { AP_VERSION } from '../../common/version.js';
import { Duplex } from 'node:stream';
import type * as k8s from '@kubernetes/client-node';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bundle = path.join(repo, 'agent/dist/agent.mjs');

before(() => {
  execFileSync(process.execPath, [path.join(repo, 'scripts/build-agent.mjs')], { stdio: 'inherit' });
});

describe('agent keys: config to agent environment', () => {
  it('every key the CLI sets is one the agent reads, with the same value', () => {
    const agent = agentSchema.parse({
      json_log: true,
      communication_timeout: 7,
      flush_connections: false,
      metrics: '0.0.0.0:9100',
      nftables: false,
      dns: { timeout: 2, attempts: 3 },
      disabled_capabilities: ['cap_net_admin', 'SYS_PTRACE'],
      max_body_buffer_size: 10,
      max_body_buffer_timeout: 300,
    });
    const env = agentKeysEnv(agent);
    assert.deepEqual(Object.keys(env).sort(), Object.values(SETTINGS_ENV).sort());
    assert.deepEqual(readSettings(env), {
      jsonLog: true,
      communicationTimeoutMs: 7000,
      flushConnections: false,
      metrics: { host: '0.0.0.0', port: 9100 },
      nftables: false,
      dnsTimeoutMs: 2000,
      dnsAttempts: 3,
      disabledCapabilities: ['NET_ADMIN', 'SYS_PTRACE'],
      maxBodyBytes: 10,
      maxBodyWaitMs: 300,
    });
  });

  it('unset keys: nothing in the environment, and the agent defaults (flush on, as mirrord)', () => {
    const env = agentKeysEnv(agentSchema.parse({}));
    assert.deepEqual(env, {});
    const s = readSettings(env);
    assert.equal(s.flushConnections, true);
    assert.equal(s.jsonLog, false);
    assert.equal(s.nftables, undefined);
    assert.equal(s.communicationTimeoutMs, undefined);
  });

  it('refuses what cannot work when the file is read', () => {
    for (const bad of [
      { disabled_capabilities: ['NET_ADMINN'] },
      { metrics: 'nine thousand' },
      { communication_timeout: 0 },
      { dns: { timeout: 0 } },
      { dns: { attempts: 0 } },
    ]) {
      assert.equal(agentSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.match(agentSchema.safeParse({ disabled_capabilities: ['NET_ADMINN'] }).error!.message, /not a Linux capability/);
  });

  it('privileged agents drop nothing; Docker drops the disabled capabilities', () => {
    assert.equal(agentKeysEnv(agentSchema.parse({ privileged: true, disabled_capabilities: ['NET_ADMIN'] })).MIRRORD_AGENT_DISABLED_CAPABILITIES, undefined);
    assert.deepEqual(agentCapabilities({ fsWrite: true, disabledCapabilities: ['NET_ADMIN', 'DAC_OVERRIDE'] }), ['SYS_PTRACE', 'DAC_READ_SEARCH', 'NET_RAW']);
  });

  it('metrics addresses', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(parseListenAddress('[::]:9000'), { host: '::', port: 9000 });
    assert.deepEqual(parseListenAddress(':9000'), { host: '0.0.0.0', port: 9000 });
    assert.throws(() => parseListenAddress('0.0.0.0:70000'), /agent.metrics/);
  });
});

describe('agent.json_log', () => {
  it("lines in mirrord's JSON shape, shown by the CLI as plain ones", () => {
    const lines: string[] = [];
    createLogger('mirrord-agent', 'info', (l) => lines.push(l), jsonLine)
      .child('incoming')
      .info('port 80 redirected to', 4000);
    createLogger('mirrord-agent', 'info', (l) => lines.push(l), jsonLine).debug('below the level');
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!) as { timestamp: string };
    assert.ok(Math.abs(Date.parse(entry.timestamp) - Date.now()) < 60_000, entry.timestamp);
    const line = JSON.stringify({ ...entry, timestamp: '2026-01-01T00:00:00.000Z' });
    assert.deepEqual(JSON.parse(line), {
      timestamp: '2026-01-01T00:00:00.000Z',
      level: 'INFO',
      target: 'mirrord-agent:incoming',
      fields: { message: 'port 80 redirected to 4000' },
    });
    assert.equal(readableAgentLine(line), '2026-01-01T00:00:00.000Z [mirrord-agent:incoming] info: port 80 redirected to 4000');
    assert.equal(readableAgentLine('{not json'), '{not json');
    assert.equal(readableAgentLine('[mirrord-agent] warn: x'), '[mirrord-agent] warn: x');
  });

  it('the agent process writes JSON lines only', async () => {
    const child = spawn(process.execPath, [bundle], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '',
        MIRRORD_AGENT_TOKEN: 'tok',
        MIRRORD_AGENT_TARGET_PID: String(process.pid),
        MIRRORD_AGENT_LOG: 'debug',
        MIRRORD_AGENT_JSON_LOG: '1',
      },
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const link = Duplex.from({ readable: child.stdout, writable: child.stdin });
    link.on('error', () => undefined);
    const conn = await AgentConnection.connect(link, { token: 'tok' });
    conn.close();
    await once(child, 'exit');
    const lines = err.split('\n').filter(Boolean);
    assert.ok(lines.length >= 2, err);
    for (const l of lines) {
      const o = JSON.parse(l) as { level: string; fields: { message: string } };
      assert.match(o.level, /^(ERROR|WARN|INFO|DEBUG|TRACE)$/);
      assert.equal(typeof o.fields.message, 'string');
    }
    assert.ok(
      lines.some((l) => /client .* connected/.test(l)),
      err,
    );
  });
});

describe('agent.communication_timeout', () => {
  /** The real agent process; a client that says HELLO and then nothing at all, not even PONG. */
  async function silentClient(timeout: string | undefined): Promise<{ ms: number; stderr: string }> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      MIRRORD_AGENT_TOKEN: 'tok',
      MIRRORD_AGENT_TARGET_PID: String(process.pid),
      MIRRORD_AGENT_LOG: 'info',
    };
    if (timeout) env.MIRRORD_AGENT_COMMUNICATION_TIMEOUT = timeout;
    const child = spawn(process.execPath, [bundle], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.resume();
    child.stdin.write(encodeHello({ version: AP_VERSION, token: 'tok', client: 'silent' }));
    const t0 = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
    await once(child, 'exit');
    clearTimeout(timer);
    return { ms: Date.now() - t0, stderr: err };
  }

  it('a silent client is dropped after the configured seconds', async () => {
    const r = await silentClient('2');
    assert.match(r.stderr, /no frame from peer for \d+ ms: link considered dead/);
    assert.ok(r.ms >= 1900 && r.ms < 5000, `dropped after ${r.ms} ms`);
  });

  it('without it the link heartbeat (15 s) keeps the same client longer', async () => {
    const r = await silentClient(undefined);
    assert.ok(r.ms >= 11_000, `dropped after ${r.ms} ms`);
  });

  it('a live client that sends nothing but answers pings is kept past the timeout', async () => {
    const child = spawn(process.execPath, [bundle], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '',
        MIRRORD_AGENT_TOKEN: 'tok',
        MIRRORD_AGENT_TARGET_PID: String(process.pid),
        MIRRORD_AGENT_COMMUNICATION_TIMEOUT: '1',
      },
    });
    const link = Duplex.from({ readable: child.stdout, writable: child.stdin });
    link.on('error', () => undefined);
    // The client's own pings only every 60 s: what keeps the link are its answers to the agent's.
    const conn = await AgentConnection.connect(link, { token: 'tok', heartbeatMs: 60_000, deadAfterMs: 120_000 });
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(child.exitCode, null, 'the agent is still there after 3 s');
    const info = await conn.request('agent.info', {});
    assert.equal(info.targetPid, process.pid);
    conn.close();
    await once(child, 'exit');
  });
});

describe('agent.dns', () => {
  /** A nameserver that counts the queries it gets and answers none. */
  async function silentNameserver(): Promise<{ port: number; queries: () => number; close: () => void }> {
    const sock = dgram.createSocket('udp4');
    let n = 0;
    sock.on('message', () => n++);
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    return { port: sock.address().port, queries: () => n, close: () => sock.close() };
  }

  async function lookup(opts: { timeoutMs?: number; attempts?: number }): Promise<{ ms: number; queries: number; code: string }> {
    const ns = await silentNameserver();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-dns-'));
    await fs.mkdir(path.join(dir, 'etc'));
    // The target's own resolv.conf says 5 s and 2 attempts.
    await fs.writeFile(path.join(dir, 'etc/resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:5 attempts:2\n');
    const dns = new DnsService({ root: dir, port: ns.port, ...opts });
    const t0 = Date.now();
    const code = await dns.lookup({ name: 'svc.example.', family: 4 }).then(
      () => 'ok',
      (e: { code?: string }) => e.code ?? '?',
    );
    const ms = Date.now() - t0;
    ns.close();
    await fs.rm(dir, { recursive: true });
    return { ms, queries: ns.queries(), code };
  }

  it('timeout and attempts replace those of the target resolv.conf', async () => {
    const quick = await lookup({ timeoutMs: 1000, attempts: 1 });
    assert.equal(quick.code, 'EAI_AGAIN');
    assert.equal(quick.queries, 1, 'one attempt: one query');
    assert.ok(quick.ms >= 900 && quick.ms < 3000, `${quick.ms} ms`);
    const three = await lookup({ timeoutMs: 300, attempts: 3 });
    assert.equal(three.queries, 3, 'three attempts: three queries');
  });
});

describe('agent.nftables and flush_connections (iptables runner)', () => {
  it('a forced back end is used without looking at the tables', async () => {
    const calls: string[] = [];
    const run = async (bin: string, args: string[]) => {
      calls.push([bin, ...args].join(' '));
      return '';
    };
    assert.equal((await Iptables.detect(undefined, run, false)).backend, 'legacy');
    assert.equal((await Iptables.detect(undefined, run, true)).backend, 'nft');
    assert.deepEqual(calls, []);
    // Unset: detection, which reads both.
    await Iptables.detect(undefined, run, undefined);
    assert.equal(calls.length, 2);
  });

  it('flushing deletes the conntrack entries to the port, IPv4 and IPv6', async () => {
    const calls: string[] = [];
    const run = async (bin: string, args: string[]) => {
      calls.push([bin, ...args].join(' '));
      if (args.includes('ipv6'))
        throw Object.assign(new Error('x'), { code: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.' });
      return 'tcp      6 431999 ESTABLISHED src=172.18.0.3 dst=172.18.0.2 sport=40000 dport=80\n';
    };
    const ipt = Iptables.using('nft', undefined, run);
    assert.equal(await ipt.flushConnections(80), 1);
    assert.deepEqual(calls, ['conntrack -D -f ipv4 -p tcp --orig-port-dst 80', 'conntrack -D -f ipv6 -p tcp --orig-port-dst 80']);
  });
});

describe('agent.check_out_of_pods', () => {
  const node = (pods: string | undefined) => ({ metadata: { name: 'n1' }, status: { allocatable: pods === undefined ? {} : { pods } } }) as k8s.V1Node;
  it('a node with as many pods as it can hold has no room', () => {
    assert.equal(outOfPods(node('110'), 109), undefined);
    assert.match(outOfPods(node('110'), 110)!, /^node n1 has no room for the agent pod: 110 pods on it, 110 allocatable/);
    assert.equal(outOfPods(node(undefined), 500), undefined, 'a node that does not say is not judged');
  });
});

describe('agent.max_body_buffer_size and max_body_buffer_timeout bound what a body filter reads', () => {
  it('a body within the size is read; a longer one, or one slower than the wait, is not', async () => {
    const { PassThrough } = await import('node:stream');
    const { readBodyForFilter } = await import('../../agent/src/incoming/http-filter.js');
    const small = new PassThrough();
    small.end(Buffer.from('0123456789'));
    assert.equal((await readBodyForFilter(small, { maxBytes: 10, waitMs: 1000 })).body?.toString(), '0123456789');
    const big = new PassThrough();
    big.end(Buffer.from('0123456789X'));
    assert.equal((await readBodyForFilter(big, { maxBytes: 10, waitMs: 1000 })).body, undefined);
    const slow = new PassThrough();
    slow.write('0123');
    const t0 = Date.now();
    const r = await readBodyForFilter(slow, { maxBytes: 10, waitMs: 150 });
    assert.equal(r.body, undefined);
    assert.ok(Date.now() - t0 < 1000, 'the wait is the configured one, not the 2 s default');
    assert.deepEqual(Buffer.concat(r.chunks).toString(), '0123', 'what was read is kept to send on');
  });
});
