import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Iptables, chainName } from '../../agent/src/incoming/iptables.js';
import { compileFilter, matches } from '../../agent/src/incoming/http-filter.js';
import { PortTable } from '../../agent/src/incoming/ports.js';
import { startAgent, type Harness } from '../helpers/agent-harness.js';
import { tapCapture } from '../helpers/tap-capture.js';

/**
 * The agent's incoming service in-process: real HTTP/1.1 and h2c servers for "the application" and
 * "the local program", the real agent and AgentConnection over an in-memory link, and an iptables
 * runner that records commands instead of touching this machine's tables.
 */
function recordingIptables(commands: string[]) {
  return () =>
    Iptables.detect(undefined, async (bin, args) => {
      commands.push(`${bin} ${args.join(' ')}`);
      return '';
    });
}

/** Every socket a server accepted, so cleanup can end keep-alive connections instead of waiting. */
const accepted = new Set<net.Socket>();

async function listen(server: net.Server): Promise<number> {
  server.on('connection', (s: net.Socket) => {
    accepted.add(s);
    s.once('close', () => accepted.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** The agent's listener port for a subscribed port, from the REDIRECT rule it asked for. */
function redirectTo(commands: string[], port: number): number {
  const rule = commands.find((c) => c.includes(`--dport ${port} -j REDIRECT`));
  assert.ok(rule, `no REDIRECT for ${port} in:\n${commands.join('\n')}`);
  return Number(/--to-ports (\d+)/.exec(rule)![1]);
}

function get(port: number, path: string, headers: Record<string, string> = {}, agent?: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
}

describe('HTTP filter matching', () => {
  it('header, path (with and without query) and method; every set filter must match', () => {
    const f = compileFilter({ header: '^x-session: me$', path: '^/api/', method: '^(GET|POST)$' });
    assert.equal(matches(f, 'GET', '/api/x?y=1', ['X-Session', 'me']), true);
    assert.equal(matches(f, 'GET', '/api/x', ['X-Session', 'you']), false);
    assert.equal(matches(f, 'DELETE', '/api/x', ['x-session', 'me']), false);
    assert.equal(matches(f, 'GET', '/web/x', ['x-session', 'me']), false);
    assert.equal(matches(compileFilter({ path: '^/a$' }), 'GET', '/a?q=1', []), true, 'the path without its query matches too');
    assert.equal(matches(compileFilter({ header: 'ME' }), 'GET', '/', ['x-session', 'me']), true, 'case-insensitive');
  });
});

describe('iptables back end', () => {
  const runner = (nft: string | Error, legacy: string | Error) => async (bin: string) => {
    const out = bin.includes('legacy') ? legacy : nft;
    if (out instanceof Error) throw out;
    return out;
  };
  it("uses the back end that already holds the namespace's nat rules", async () => {
    const rules = '*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\nCOMMIT\n';
    assert.equal((await Iptables.detect(undefined, runner('*nat\nCOMMIT\n', rules))).backend, 'legacy');
    assert.equal((await Iptables.detect(undefined, runner(rules, '*nat\nCOMMIT\n'))).backend, 'nft');
    assert.equal((await Iptables.detect(undefined, runner('', ''))).backend, 'nft', 'nft when neither has rules');
    assert.equal((await Iptables.detect(undefined, runner(new Error('no nf_tables'), ''))).backend, 'legacy', 'legacy when nft is unusable');
  });
  it("chain names fit iptables' 28 characters", () => {
    assert.ok(chainName('0123456789abcdef0123456789abcdef').length <= 28);
  });
});

describe('incoming service (in-process, recorded iptables)', () => {
  const cleanups: Array<() => unknown> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const s of accepted) s.destroy();
  });

  async function setup(mode: 'steal' | 'mirror', httpFilter?: { header?: string }, h2 = false) {
    const commands: string[] = [];
    // Mirrors capture packets: here the tap in front of the application stands in for the raw socket.
    const capture = tapCapture();
    const ports = mode === 'mirror' ? new PortTable({ chain: chainName('unit'), iptables: recordingIptables(commands), capture: capture.open }) : undefined;
    const h: Harness = await startAgent({ session: 'unit', iptables: recordingIptables(commands), ports });
    cleanups.push(async () => {
      capture.close();
      await ports?.close();
    });
    cleanups.push(async () => {
      h.conn.close();
      await h.agentDone;
    });
    const seenLocally: string[] = [];
    const mk = (name: string) =>
      h2
        ? http2.createServer((req, res) => {
            seenLocally.push(`${name} ${req.url}`);
            res.end(`${name} ${req.url}`);
          })
        : http.createServer((req, res) => {
            seenLocally.push(`${name} ${req.url} ${req.socket.remoteAddress}`);
            req.resume();
            req.on('end', () => res.end(`${name} ${req.url}`));
          });
    const app = mk('app');
    const local = mk('local');
    const appPort = await listen(app);
    const localPort = await listen(local);
    cleanups.push(
      () => void app.close(),
      () => void local.close(),
    );
    // What the intproxy does with each OPEN: dial the program's listener.
    h.conn.onIncoming((_info, stream) => {
      const s = net.connect(localPort, '127.0.0.1');
      stream.pipe(s).pipe(stream);
      s.on('error', () => stream.destroy());
    });
    await h.conn.request('incoming.subscribe', { port: appPort, mode, ...(httpFilter ? { httpFilter } : {}) });
    const agentPort = mode === 'mirror' ? await capture.tap(appPort) : redirectTo(commands, appPort);
    return { h, commands, appPort, agentPort, seenLocally };
  }

  it('creates its own chain, redirects only the subscribed port, removes everything at the end', async () => {
    const { h, commands, appPort } = await setup('steal');
    const chain = chainName('unit');
    assert.ok(commands.some((c) => c.includes(`-N ${chain}`)));
    assert.ok(commands.some((c) => c.includes(`-I PREROUTING 1 -p tcp -j ${chain}`)));
    await h.conn.request('incoming.unsubscribe', { port: appPort });
    assert.ok(commands.some((c) => c.includes(`-D ${chain} -p tcp --dport ${appPort} -j REDIRECT`)));
    h.conn.close();
    await h.agentDone;
    assert.ok(
      commands.some((c) => c.includes(`-X ${chain}`)),
      'the chain is deleted when the link ends',
    );
  });

  it('steal: every request reaches the local program', async () => {
    const { agentPort } = await setup('steal');
    assert.equal(await get(agentPort, '/one'), 'local /one');
  });

  it("mirror: the client gets the application's answer, the local program a copy; no rule", async () => {
    const { agentPort, seenLocally, commands } = await setup('mirror');
    assert.deepEqual(
      commands.filter((c) => !c.includes('-save')),
      [],
      'mirroring runs no iptables command',
    );
    assert.equal(await get(agentPort, '/m'), 'app /m');
    for (let i = 0; i < 50 && !seenLocally.some((s) => s.startsWith('local /m')); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(
      seenLocally.some((s) => s.startsWith('local /m')),
      `local saw: ${seenLocally.join(', ')}`,
    );
    assert.ok(seenLocally.some((s) => s.startsWith('app /m')));
  });

  it('HTTP/1.1 filter on one keep-alive connection', async () => {
    const { agentPort } = await setup('steal', { header: '^x-session: me$' });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await get(agentPort, `/k${i}`, i % 2 ? {} : { 'x-session': 'me' }, agent));
    agent.destroy();
    assert.deepEqual(got, ['local /k0', 'app /k1', 'local /k2', 'app /k3']);
  });

  it('h2c (HTTP/2 with prior knowledge): routed per stream on one connection', async () => {
    const { agentPort } = await setup('steal', { header: '^x-session: me$' }, true);
    const session = http2.connect(`http://127.0.0.1:${agentPort}`);
    const req = (path: string, headers: Record<string, string>) =>
      new Promise<string>((resolve, reject) => {
        const s = session.request({ ':path': path, ...headers });
        let b = '';
        s.setEncoding('utf8');
        s.on('data', (d) => (b += d));
        s.on('end', () => resolve(b));
        s.on('error', reject);
        s.end();
      });
    const got = await Promise.all([req('/h0', { 'x-session': 'me' }), req('/h1', {}), req('/h2', { 'x-session': 'me' })]);
    session.close();
    assert.deepEqual(got, ['local /h0', 'app /h1', 'local /h2']);
  });
});
