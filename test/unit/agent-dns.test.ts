/**
 * dns.lookup through AgentConnection and the real serveAgent, against a fake target root (its own
 * etc/hosts and etc/resolv.conf) and a real UDP DNS server on 127.0.0.1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AgentLinkError } from '../../src/agent-link/connection.js';
import { parseHosts, parseResolvConf, searchCandidates } from '../../agent/src/dns.js';
import { startAgent, startFakeDns, type FakeDns, type Harness } from '../helpers/agent-harness.js';

const HOSTS = `# the target's hosts file
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost
10.1.2.3   myhost.internal myhost   # pinned
fd00::3    myhost.internal
`;
const RESOLV = `nameserver 127.0.0.1
search svc.cluster.local cluster.local
options ndots:2 timeout:1 attempts:1
`;

let dns: FakeDns;
let root: string;
let h: Harness;

before(async () => {
  dns = await startFakeDns({
    'api.svc.cluster.local': { A: ['10.0.0.5'] },
    'api.cluster.local': { A: ['10.0.0.99'] },
    'db.prod': { A: ['10.0.0.7'] },
    'www.example.com': { A: ['192.0.2.10'], AAAA: ['2001:db8::10'] },
    'v4only.example.com': { A: ['192.0.2.11'] },
    'broken.example.com': { rcode: 2 },
    api: { A: ['10.9.9.9'] },
  });
  root = await mkdtemp(path.join(os.tmpdir(), 'mirrord-dns-'));
  await mkdir(path.join(root, 'etc'));
  await writeFile(path.join(root, 'etc/hosts'), HOSTS);
  await writeFile(path.join(root, 'etc/resolv.conf'), RESOLV);
  h = await startAgent({ root, dnsPort: dns.port });
});

after(async () => {
  h.conn.close();
  await h.agentDone;
  await dns.close();
  await rm(root, { recursive: true, force: true });
});

const lookup = (name: string, family: 0 | 4 | 6 = 4) => h.conn.request('dns.lookup', { name, family });
/** Queries the DNS server saw during fn. */
async function queriesDuring(fn: () => Promise<unknown>): Promise<string[]> {
  const start = dns.queries.length;
  await fn().catch(() => undefined);
  return dns.queries.slice(start);
}
const code = (c: string) => (err: unknown) => err instanceof AgentLinkError && err.code === c;

test('hosts file first, without asking the nameserver', async () => {
  const q = await queriesDuring(async () => {
    assert.deepEqual(await lookup('myhost', 0), {
      addresses: [
        { address: '10.1.2.3', family: 4 },
        { address: 'fd00::3', family: 6 },
      ],
      canonname: 'myhost.internal',
    });
    assert.deepEqual((await lookup('MyHost.Internal.', 6)).addresses, [{ address: 'fd00::3', family: 6 }]);
    assert.deepEqual((await lookup('localhost', 4)).addresses, [{ address: '127.0.0.1', family: 4 }]);
    assert.deepEqual((await lookup('localhost', 6)).addresses, [{ address: '::1', family: 6 }]);
  });
  assert.deepEqual(q, []);
});

test('fewer dots than ndots: the search list comes first', async () => {
  const q = await queriesDuring(async () => {
    assert.deepEqual(await lookup('api'), { addresses: [{ address: '10.0.0.5', family: 4 }], canonname: 'api.svc.cluster.local' });
  });
  assert.deepEqual(q, ['api.svc.cluster.local A']);

  const q2 = await queriesDuring(async () => assert.deepEqual((await lookup('db.prod')).addresses, [{ address: '10.0.0.7', family: 4 }]));
  assert.deepEqual(q2, ['db.prod.svc.cluster.local A', 'db.prod.cluster.local A', 'db.prod A']);
});

test('at least ndots dots: the name as is comes first', async () => {
  const q = await queriesDuring(async () => {
    assert.deepEqual(await lookup('www.example.com', 0), {
      addresses: [
        { address: '192.0.2.10', family: 4 },
        { address: '2001:db8::10', family: 6 },
      ],
      canonname: 'www.example.com',
    });
  });
  assert.deepEqual(q.sort(), ['www.example.com A', 'www.example.com AAAA']);
});

test('a trailing dot never gets search domains', async () => {
  const q = await queriesDuring(() => assert.rejects(lookup('api.cluster.'), code('ENOTFOUND')));
  assert.deepEqual(q, ['api.cluster A']);
  assert.deepEqual((await lookup('api.')).addresses, [{ address: '10.9.9.9', family: 4 }]);
});

test('ENOTFOUND after every candidate, ENODATA for a missing family, EAI_AGAIN on server failure', async () => {
  const q = await queriesDuring(() => assert.rejects(lookup('nothing'), code('ENOTFOUND')));
  assert.deepEqual(q, ['nothing.svc.cluster.local A', 'nothing.cluster.local A', 'nothing A']);
  await assert.rejects(lookup('v4only.example.com', 6), code('ENODATA'));
  assert.deepEqual((await lookup('v4only.example.com', 0)).addresses, [{ address: '192.0.2.11', family: 4 }]);
  await assert.rejects(lookup('broken.example.com'), code('EAI_AGAIN'));
});

test('IP literals come back as they are', async () => {
  assert.deepEqual(await lookup('192.0.2.1', 0), { addresses: [{ address: '192.0.2.1', family: 4 }], canonname: '192.0.2.1' });
});

test('resolv.conf and hosts parsing follow glibc', () => {
  const c = parseResolvConf(
    'domain a.example\nsearch b.example c.example.\nnameserver 10.0.0.1\nnameserver ::1\nnameserver bogus\noptions ndots:5 timeout:2 attempts:3 rotate\n',
  );
  assert.deepEqual(c, { nameservers: ['10.0.0.1', '::1'], search: ['b.example', 'c.example'], ndots: 5, timeoutMs: 2000, attempts: 3 });
  assert.deepEqual(parseResolvConf(''), { nameservers: ['127.0.0.1'], search: [], ndots: 1, timeoutMs: 5000, attempts: 2 });
  assert.deepEqual(searchCandidates('a', { search: ['x'], ndots: 1 }), ['a.x', 'a']);
  assert.deepEqual(searchCandidates('a.b', { search: ['x'], ndots: 1 }), ['a.b', 'a.b.x']);
  assert.deepEqual(searchCandidates('a.b.', { search: ['x'], ndots: 1 }), ['a.b']);
  assert.deepEqual(parseHosts('garbage line\n1.2.3.4\n5.6.7.8 A b # c\n'), [{ address: '5.6.7.8', family: 4, names: ['a', 'b'] }]);
});
