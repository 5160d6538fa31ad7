import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Iptables } from '../../agent/src/incoming/iptables.js';
import { PortTable } from '../../agent/src/incoming/ports.js';
import { startAgent, type Harness } from '../helpers/agent-harness.js';
import { tapCapture } from '../helpers/tap-capture.js';

/**
 * One agent, many sessions: several links (the real serveAgent and AgentConnection, in memory)
 * share one port table, as the sessions of a shared agent do. A real HTTP/1.1 + h2c "application"
 * and one "local program" per session; iptables commands recorded, never run.
 */
const sockets = new Set<net.Socket>();
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  for (const s of sockets) s.destroy();
});

async function listen(server: net.Server): Promise<number> {
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => void server.close());
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/1.1 server and an h2c server answering `NAME PATH`. */
async function named(name: string): Promise<{ h1: number; h2: number }> {
  const h1 = await listen(http.createServer((q, s) => q.resume().on('end', () => s.end(`${name} ${q.url}`))));
  const h2 = await listen(http2.createServer((q, s) => s.end(`${name} ${q.url}`)));
  return { h1, h2 };
}

function world() {
  const commands: string[] = [];
  const capture = tapCapture();
  cleanups.push(() => capture.close());
  const table = new PortTable({
    chain: 'MIRRORD_shared',
    capture: capture.open,
    iptables: () =>
      Iptables.detect(undefined, async (bin, args) => {
        commands.push(`${bin} ${args.join(' ')}`);
        return '';
      }),
  });
  cleanups.push(() => table.close());
  const redirects = (port: number) => commands.filter((c) => c.startsWith('iptables-') && c.includes(`-A MIRRORD_shared -p tcp --dport ${port} `));
  const agentPort = (port: number) => Number(/--to-ports (\d+)/.exec(redirects(port)[0] ?? '')?.[1]);
  return { table, commands, redirects, agentPort, tap: capture.tap };
}

/** A session of the shared agent whose local program listens at `local`. */
async function session(table: PortTable, name: string, local: number): Promise<Harness> {
  const h = await startAgent({ session: name, ports: table }, { client: name });
  h.conn.onIncoming((_info, stream) => {
    const s = net.connect(local, '127.0.0.1');
    stream.pipe(s).pipe(stream);
    s.on('error', () => stream.destroy());
    stream.on('error', () => s.destroy());
  });
  cleanups.push(async () => {
    h.conn.close();
    await h.agentDone;
  });
  return h;
}

function get(port: number, path: string, headers: Record<string, string>, agent: http.Agent): Promise<string> {
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

/** Requests on ONE keep-alive connection, in order, each with its x-session header (none for ''). */
async function keepAlive(port: number, who: string[]): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: string[] = [];
  let first: net.Socket | undefined;
  for (const [i, w] of who.entries()) {
    out.push(await get(port, `/${i}`, w ? { 'x-session': w } : {}, agent));
    const s = Object.values(agent.freeSockets)[0]?.[0] as net.Socket | undefined;
    first ??= s;
    assert.equal(s, first, 'the keep-alive connection was replaced');
  }
  agent.destroy();
  return out;
}

async function waitFor(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(f(), what);
}

describe('one agent, many sessions: concurrent filtered steal', () => {
  it('two filtered sessions on one port: per request on HTTP/1.1 keep-alive and per stream on h2c; one rule', async () => {
    const app = await named('app');
    const la = await named('a');
    const lb = await named('b');
    const w = world();
    const a = await session(w.table, 'a', la.h1);
    const b = await session(w.table, 'b', lb.h1);
    await a.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', httpFilter: { header: '^x-session: a$' } });
    await b.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', httpFilter: { header: '^x-session: b$' } });
    assert.equal(w.redirects(app.h1).length, 1, 'one REDIRECT for the port, whatever the number of sessions');
    // agent.sessions: the others, never the asker; what they steal and how.
    const { sessions } = await a.conn.request('agent.sessions', {});
    assert.deepEqual(
      sessions.map((x) => [x.session, x.client, x.subscriptions.map((p) => `${p.mode} ${p.port} ${p.filter}`)]),
      [['b', 'b', [`steal ${app.h1} header ^x-session: b$`]]],
    );
    const port = w.agentPort(app.h1);
    assert.deepEqual(await keepAlive(port, ['a', 'b', '', 'a', 'b', '']), ['a /0', 'b /1', 'app /2', 'a /3', 'b /4', 'app /5']);

    // h2c: the same two sessions on the application's h2c port, their local programs' h2c servers.
    const a2 = await session(w.table, 'a2', la.h2);
    const b2 = await session(w.table, 'b2', lb.h2);
    await a2.conn.request('incoming.subscribe', { port: app.h2, mode: 'steal', httpFilter: { header: '^x-session: a$' } });
    await b2.conn.request('incoming.subscribe', { port: app.h2, mode: 'steal', httpFilter: { header: '^x-session: b$' } });
    const h2 = http2.connect(`http://127.0.0.1:${w.agentPort(app.h2)}`);
    const req = (path: string, who: string) =>
      new Promise<string>((resolve, reject) => {
        const s = h2.request({ ':path': path, ...(who ? { 'x-session': who } : {}) });
        let body = '';
        s.setEncoding('utf8');
        s.on('data', (d) => (body += d));
        s.on('end', () => resolve(body));
        s.on('error', reject);
        s.end();
      });
    assert.deepEqual(await Promise.all([req('/x', 'a'), req('/y', 'b'), req('/z', ''), req('/w', 'a')]), ['a /x', 'b /y', 'app /z', 'a /w']);
    h2.close();
  });

  it("a session that leaves: its requests go to the application, the other's keep working; the rule goes with the last", async () => {
    const app = await named('app');
    const la = await named('a');
    const lb = await named('b');
    const w = world();
    const a = await session(w.table, 'a', la.h1);
    const b = await session(w.table, 'b', lb.h1);
    await a.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', httpFilter: { header: '^x-session: a$' } });
    await b.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', httpFilter: { header: '^x-session: b$' } });
    const port = w.agentPort(app.h1);
    a.cut(); // as a SIGKILLed CLI: the link dies
    await a.agentDone;
    assert.deepEqual(await keepAlive(port, ['a', 'b', '']), ['app /0', 'b /1', 'app /2']);
    assert.ok(!w.commands.some((c) => c.includes(`-D MIRRORD_shared -p tcp --dport ${app.h1} `)), 'the rule stays while b steals');
    b.conn.close();
    await b.agentDone;
    assert.ok(
      w.commands.some((c) => c.includes(`-D MIRRORD_shared -p tcp --dport ${app.h1} `)),
      'the last session takes the rule',
    );
  });

  it('an unfiltered steal beside a filtered one: abort names the other session, continue takes the rest, override takes all', async () => {
    const app = await named('app');
    const la = await named('a');
    const lc = await named('c');
    const lo = await named('o');
    const w = world();
    const a = await session(w.table, 'sessa', la.h1);
    await a.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', httpFilter: { header: '^x-session: a$' } });
    const port = w.agentPort(app.h1);

    const x = await session(w.table, 'sessx', la.h1);
    await assert.rejects(x.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /port \d+ is already stolen by session sessa \(sessa\) with filter header \^x-session: a\$/);
      assert.match(err.message, /on_concurrent_steal/);
      return true;
    });

    const c = await session(w.table, 'sessc', lc.h1);
    await c.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', onConcurrentSteal: 'continue' });
    assert.deepEqual(await keepAlive(port, ['a', '', 'zzz']), ['a /0', 'c /1', 'c /2']);

    const o = await session(w.table, 'sesso', lo.h1);
    await o.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal', onConcurrentSteal: 'override' });
    assert.deepEqual(await keepAlive(port, ['a', '']), ['o /0', 'o /1']);
    o.conn.close();
    await o.agentDone;
    assert.deepEqual(await keepAlive(port, ['a', '']), ['a /0', 'c /1'], 'the others get the port back');
  });

  it('a mirror beside a steal: the stealer answers, the mirror gets a copy of what the capture saw', async () => {
    const app = await named('app');
    const ls = await named('s');
    const seen: string[] = [];
    const mirrorLocal = await listen(
      http.createServer((q, s) => {
        seen.push(q.url ?? '');
        s.end('ignored');
      }),
    );
    const w = world();
    const m = await session(w.table, 'mirror', mirrorLocal);
    await m.conn.request('incoming.subscribe', { port: app.h1, mode: 'mirror' });
    const s = await session(w.table, 'steal', ls.h1);
    await s.conn.request('incoming.subscribe', { port: app.h1, mode: 'steal' });
    // The client reaches the stealer (the REDIRECT's job), the capture sees the port's packets.
    assert.deepEqual(await keepAlive(await w.tap(w.agentPort(app.h1), app.h1), ['', '']), ['s /0', 's /1']);
    await waitFor(`the mirror saw both requests (saw ${seen.join(', ')})`, () => seen.length === 2);
  });
});
