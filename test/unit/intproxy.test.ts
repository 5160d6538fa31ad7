import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import type { ApMethods } from '../../common/protocol/agent/index.js';
import { LP_VERSION } from '../../common/version.js';
import { LpFrameReader, LpStatus, decodeResponse, encodeRequest, type LpRequest, type LpResponse } from '../../common/protocol/layer/index.js';
import { configSchema, resolveFeatures } from '../../src/config/schema.js';
import { DnsResolver, NAME_CACHE_MAX_IPS, NAME_CACHE_MAX_NAMES_PER_IP, NameCache } from '../../src/intproxy/dns.js';
import { EAI } from '../../src/intproxy/errno.js';
import { Intproxy } from '../../src/intproxy/intproxy.js';
import { fakeAgentPort } from '../helpers/fake-agent-port.js';

const log = createLogger('test', 'error');
const ipOf = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const features = (network: Record<string, unknown>) => resolveFeatures(configSchema.parse({ feature: { network } }));

describe('intproxy name cache (names by IP, for outgoing filters written with names)', () => {
  it(`keeps at most ${NAME_CACHE_MAX_IPS} IPs, evicting the least recently used`, () => {
    const cache = new NameCache();
    assert.equal(cache.maxIps, 4096);
    for (let i = 0; i < NAME_CACHE_MAX_IPS; i++) cache.add(ipOf(i), `h${i}.example`);
    assert.equal(cache.size, NAME_CACHE_MAX_IPS);
    assert.deepEqual(cache.namesOf(ipOf(0)), ['h0.example'], 'a connect() to the oldest IP uses it again');
    for (let i = NAME_CACHE_MAX_IPS; i < NAME_CACHE_MAX_IPS + 1000; i++) cache.add(ipOf(i), `h${i}.example`);
    assert.equal(cache.size, NAME_CACHE_MAX_IPS, 'the bound holds however many names are resolved');
    assert.deepEqual(cache.namesOf(ipOf(0)), ['h0.example'], 'recently used: kept');
    assert.deepEqual(cache.namesOf(ipOf(1)), [], 'least recently used: evicted first');
    assert.deepEqual(cache.namesOf(ipOf(1000)), [], 'the 1000 oldest after the refreshed one are gone');
    assert.deepEqual(cache.namesOf(ipOf(1001)), ['h1001.example']);
    assert.deepEqual(cache.namesOf(ipOf(NAME_CACHE_MAX_IPS + 999)), [`h${NAME_CACHE_MAX_IPS + 999}.example`]);
  });

  it(`keeps at most ${NAME_CACHE_MAX_NAMES_PER_IP} names per IP, the latest`, () => {
    const cache = new NameCache();
    for (let i = 0; i < 40; i++) cache.add('203.0.113.7', `cdn${i}.example`);
    const names = cache.namesOf('203.0.113.7');
    assert.equal(names.length, NAME_CACHE_MAX_NAMES_PER_IP);
    assert.deepEqual(
      names,
      Array.from({ length: 16 }, (_, i) => `cdn${24 + i}.example`),
    );
    cache.add('203.0.113.7', 'CDN24.example');
    cache.add('203.0.113.7', 'new.example');
    assert.ok(cache.namesOf('203.0.113.7').includes('cdn24.example'), 'resolving a name again refreshes it (lowercased, once)');
    assert.equal(cache.namesOf('203.0.113.7').length, 16);
  });

  it('small caps work the same way; a cap below 1 is refused', () => {
    const cache = new NameCache(2, 1);
    cache.add('192.0.2.1', 'a');
    cache.add('192.0.2.2', 'b');
    cache.add('192.0.2.2', 'c');
    cache.add('192.0.2.3', 'd');
    assert.equal(cache.size, 2);
    assert.deepEqual([cache.namesOf('192.0.2.1'), cache.namesOf('192.0.2.2'), cache.namesOf('192.0.2.3')], [[], ['c'], ['d']]);
    assert.throws(() => new NameCache(0), RangeError);
  });
});

describe('intproxy DNS', () => {
  const lookup = (node: string, family: 0 | 2 | 10 = 0) => ({ id: 1, kind: 'getaddrinfo' as const, node, family });

  it('resolves through the agent and remembers the names of the answers', async () => {
    const asked: unknown[] = [];
    const agent = fakeAgentPort({
      request: (method, params) => {
        asked.push([method, params]);
        return Promise.resolve({
          addresses: [
            { address: '10.0.0.5', family: 4 },
            { address: 'fd00::5', family: 6 },
          ],
          canonname: 'db.internal',
        });
      },
    });
    const stats = { lookups: 0 };
    const dns = new DnsResolver(agent, features({}), log, stats);
    const r = await dns.lookup(lookup('DB', 2));
    assert.equal(r.status, LpStatus.Ok);
    assert.deepEqual(r.addresses, [
      { family: 4, address: '10.0.0.5' },
      { family: 6, address: 'fd00::5' },
    ]);
    assert.deepEqual(asked, [['dns.lookup', { name: 'DB', family: 4 }]]);
    assert.deepEqual(dns.names.namesOf('fd00::5'), ['db']);
    assert.equal(stats.lookups, 1);
  });

  it('stays local when disabled or filtered, maps agent errors to EAI_*', async () => {
    let calls = 0;
    const agent = fakeAgentPort({
      request: () => {
        calls++;
        return Promise.reject(Object.assign(new Error('nope'), { code: 'ENOTFOUND' }));
      },
    });
    const off = new DnsResolver(agent, features({ dns: false }), log, { lookups: 0 });
    assert.equal((await off.lookup(lookup('x'))).status, LpStatus.Bypass);
    const filtered = new DnsResolver(agent, features({ dns: { filter: { local: ['.corp'] } } }), log, { lookups: 0 });
    assert.equal((await filtered.lookup(lookup('git.corp'))).status, LpStatus.Bypass);
    assert.equal(calls, 0);
    assert.equal((await filtered.lookup(lookup('example.org'))).status, EAI.NONAME);
    assert.equal(calls, 1);
  });
});

type NoId<T> = T extends unknown ? Omit<T, 'id'> : never;
/** The answer to a request of kind K (listen and unlisten share one). */
type Answer<K> = LpResponse extends infer T ? (T extends { kind: infer X } ? (K extends X ? T : never) : never) : never;

/** A layer's side of LP: one request at a time, answered in order. */
async function layerClient(address: string) {
  const [host, port] = address.split(':');
  const sock = net.connect(Number(port), host);
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  const reader = new LpFrameReader();
  const answers: LpResponse[] = [];
  const waiting: Array<(r: LpResponse) => void> = [];
  sock.on('data', (d: Buffer) => {
    for (const f of reader.push(d)) {
      const r = decodeResponse(f);
      const w = waiting.shift();
      if (w) w(r);
      else answers.push(r);
    }
  });
  let id = 1;
  return {
    ask<R extends NoId<LpRequest>>(req: R): Promise<Answer<R['kind']>> {
      sock.write(encodeRequest({ ...req, id: id++ } as LpRequest));
      const ready = answers.shift();
      return (ready ? Promise.resolve(ready) : new Promise<LpResponse>((r) => waiting.push(r))) as Promise<Answer<R['kind']>>;
    },
    close: () => sock.destroy(),
  };
}

describe('intproxy over LP, with a fake agent port', () => {
  const cleanups: Array<() => unknown> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('a name-written outgoing filter matches a connect() to the IP the name resolved to; the rest is spliced to the agent', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => echo.close(r)));
    const dialled: string[] = [];
    const agent = fakeAgentPort({
      connectTcp: async (host, port) => {
        dialled.push(`${host}:${port}`);
        const s = net.connect((echo.address() as net.AddressInfo).port, '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        return s;
      },
      request: <M extends keyof ApMethods>(method: M) =>
        method === 'dns.lookup' ? Promise.resolve({ addresses: [{ address: '10.9.9.9', family: 4 }], canonname: '' }) : Promise.reject(new Error(method)),
    });
    const intproxy = await Intproxy.start({ agent, features: features({ outgoing: { filter: { local: ['db.example'] } } }), log });
    cleanups.push(() => intproxy.close());
    const layer = await layerClient(intproxy.address);
    cleanups.push(() => layer.close());

    assert.equal((await layer.ask({ kind: 'hello', version: LP_VERSION, pid: 4242, ppid: 1, parentPid: 0, exe: '/bin/test' })).status, 0);
    const resolved = await layer.ask({ kind: 'getaddrinfo', node: 'db.example', family: 2 });
    assert.deepEqual(resolved.addresses, [{ family: 4, address: '10.9.9.9' }]);
    const filtered = await layer.ask({ kind: 'connect', proto: 'tcp', remote: { family: 4, address: '10.9.9.9', port: 5432 } });
    assert.equal(filtered.status, LpStatus.Bypass, 'db.example stays local, written as a name');
    const udp = await layer.ask({ kind: 'connect', proto: 'udp', remote: { family: 4, address: '10.9.9.8', port: 53 } });
    assert.equal(udp.status, LpStatus.Bypass, 'the port says it carries no UDP');
    const listen = await layer.ask({
      kind: 'listen',
      requested: { family: 4, address: '0.0.0.0', port: 8080 },
      bound: { family: 4, address: '0.0.0.0', port: 8080 },
    });
    assert.equal(listen.status, LpStatus.Bypass, 'the port says it carries no incoming traffic');
    assert.equal(intproxy.incoming, undefined);

    const remote = await layer.ask({ kind: 'connect', proto: 'tcp', remote: { family: 4, address: '10.9.9.8', port: 80 } });
    assert.equal(remote.status, LpStatus.Ok);
    assert.deepEqual(dialled, ['10.9.9.8:80']);
    const program = net.connect(remote.via.port, remote.via.address);
    program.write('ping');
    const echoed = await new Promise<string>((r) => program.once('data', (d: Buffer) => r(d.toString())));
    program.destroy();
    assert.equal(echoed, 'ping');
    assert.deepEqual(intproxy.stats, { layers: 1, connectsRemote: 1, connectsBypassed: 2, lookups: 1 });
  });
});
