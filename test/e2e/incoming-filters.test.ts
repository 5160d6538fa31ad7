import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { killGroups, natTable as targetNat, startMirrord, stopMirrord as stop, until } from '../helpers/incoming.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * mirrord's composite and body filters against a real Docker target: any_of of a nested all_of
 * (header and path) and a JSON body filter, routed per request on one HTTP/1.1 keep-alive
 * connection and per stream on one h2c connection, bodies delivered intact to whoever answers.
 */
const H1 = 8080;
const H2 = 8081;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-filters-'));
// Both servers answer "NAME METHOD URL BODY", over HTTP/1.1 and h2c.
const servers = (name: string) => `
const reply = (q, s) => { let b = ''; q.on('data', (d) => (b += d)); q.on('end', () => s.end('${name} ' + q.method + ' ' + q.url + ' ' + b)); };
require('http').createServer(reply).listen(${H1});
require('http2').createServer(reply).listen(${H2}, () => console.log('listening'));`;
const LOCAL = path.join(dir, 'local.js');
writeFileSync(LOCAL, servers('local'));
const FILTER = {
  any_of: [{ all_of: [{ header: '^x-user: me$' }, { path: '^/api/' }] }, { body: 'json', query: '$.user[?(@.id == 42)].name', matches: '^(ann|bob)$' }],
};
// [method, path, headers, body, who answers]
const CASES: Array<[string, string, Record<string, string>, string, 'local' | 'target']> = [
  ['GET', '/api/a', { 'x-user': 'me' }, '', 'local'],
  ['GET', '/other', { 'x-user': 'me' }, '', 'target'],
  ['POST', '/b1', { 'content-type': 'application/json' }, JSON.stringify({ user: [{ id: 42, name: 'bob' }] }), 'local'],
  ['POST', '/b2', { 'content-type': 'application/json' }, JSON.stringify({ user: [{ id: 7, name: 'bob' }] }), 'target'],
  ['POST', '/b3', {}, 'not json', 'target'],
  ['GET', '/api/c', {}, '', 'target'],
];
const expected = CASES.map(([m, p, , b, who]) => `${who === 'local' ? 'local' : 'target'} ${m} ${p} ${b}`);

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let agentImage = '';

describe('HTTP filters: all_of / any_of (nested) and body_filter', { timeout: 600_000 }, () => {
  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    network = await createNetwork('mirrord-filters');
    target = await runContainer({ name: 'filters-target', network: network.name, cmd: ['node', '-e', servers('target')], waitFor: { tcpPort: H2 } });
    client = await runContainer({ name: 'filters-client', network: network.name, cmd: ['sleep', '100000'] });
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it('steal: each request to whoever the filter tree picks, on one keep-alive connection and on h2c', async () => {
    const baseline = await targetNat(target.id, agentImage);
    const cfg = path.join(dir, 'steal.json');
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', http_filter: FILTER } } } }));
    const r = startMirrord(target.name, ['-f', cfg], ['node', LOCAL]);
    const cases = JSON.stringify(CASES);
    const h1 = `
import http.client, json
c = http.client.HTTPConnection("${target.name}", ${H1}, timeout=10)
out = []
for (m, p, h, b, _) in json.loads(${JSON.stringify(cases)}):
    c.request(m, p, body=b.encode() if b else None, headers=h)
    if not out: first = c.sock
    out.append(c.getresponse().read().decode())
    assert c.sock is first, "the keep-alive connection was replaced"
print(json.dumps(out))`;
    const h2 = `
const s = require('http2').connect('http://${target.name}:${H2}');
const one = ([m, p, h, b]) => new Promise((res, rej) => { const q = s.request({ ':method': m, ':path': p, ...h }); let o = ''; q.setEncoding('utf8'); q.on('data', (d) => (o += d)); q.on('end', () => res(o)); q.on('error', rej); q.end(b || undefined); });
Promise.all(${cases}.map(one)).then((v) => { console.log(JSON.stringify(v)); s.close(); }, (e) => { console.error(e.message); process.exit(1); });`;
    try {
      await until('the filter to take effect', async () =>
        (await client.exec(['curl', '-s', '-m', '5', '-H', 'x-user: me', `http://${target.name}:${H1}/api/probe`])).stdout.startsWith('local'),
      );
      const one = await client.exec(['python3', '-c', h1]);
      assert.deepEqual(JSON.parse(one.stdout || '[]'), expected, one.stderr);
      const two = await client.exec(['node', '-e', h2]);
      assert.deepEqual(JSON.parse(two.stdout || '[]'), expected, two.stderr);
    } finally {
      await stop(r);
    }
    assert.equal(await targetNat(target.id, agentImage), baseline);
  });

  it('an invalid JSONPath is refused with one line, and the port stays local', async () => {
    const cfg = path.join(dir, 'bad.json');
    writeFileSync(
      cfg,
      JSON.stringify({ feature: { network: { incoming: { mode: 'steal', http_filter: { body_filter: { body: 'json', query: 'user.id', matches: '.' } } } } } }),
    );
    const r = startMirrord(target.name, ['-f', cfg], ['node', LOCAL]);
    try {
      await until('the refusal', async () => /cannot steal port 8080 of the target: .*JSONPath "user\.id": a query starts with \$/.test(r.out()));
      assert.match((await client.exec(['curl', '-s', '-m', '5', `http://${target.name}:${H1}/x`])).stdout, /^target GET \/x/);
    } finally {
      await stop(r);
    }
  });

  it('jq header filters: a match reaches the local server, the rest the target; a runaway run is cut at the limit', async () => {
    const cfg = path.join(dir, 'jq.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        agent: { jaq_time_limit: 300 },
        feature: {
          network: {
            incoming: {
              mode: 'steal',
              http_filter: {
                any_of: [
                  { query: 'ascii_downcase == "x-user: jq-me"' },
                  // Never ends when the header is there: the run is cut and the request goes to the target.
                  { all_of: [{ path: '^/spin' }, { query: 'if startswith("x-spin") then until(false; .) else false end' }] },
                ],
              },
            },
          },
        },
      }),
    );
    const r = startMirrord(target.name, ['-f', cfg], ['node', LOCAL]);
    const curl = async (p: string, ...h: string[]) =>
      (await client.exec(['curl', '-s', '-m', '10', ...h.flatMap((x) => ['-H', x]), `http://${target.name}:${H1}${p}`])).stdout;
    try {
      await until('the filter to take effect', async () => (await curl('/probe', 'X-User: JQ-me')).startsWith('local'));
      assert.equal(await curl('/a', 'X-User: jq-me'), 'local GET /a ');
      assert.equal(await curl('/b', 'X-User: someone-else'), 'target GET /b ');
      assert.equal(await curl('/c'), 'target GET /c ');
      const t0 = performance.now();
      assert.equal(await curl('/spin', 'X-Spin: 1'), 'target GET /spin ');
      const took = performance.now() - t0;
      assert.ok(took >= 300 && took < 8000, `the runaway request was answered after ${took.toFixed(0)} ms`);
      // The agent was not blocked meanwhile, and its engine still answers after the cut.
      assert.equal(await curl('/d', 'X-User: jq-me'), 'local GET /d ');
      assert.equal(await curl('/spin', 'X-User: jq-me'), 'local GET /spin ');
    } finally {
      await stop(r);
    }
  });

  it('an invalid jq expression is refused when the config is read: one line, exit 78', async () => {
    const cfg = path.join(dir, 'bad-jq.json');
    writeFileSync(cfg, JSON.stringify({ feature: { network: { incoming: { mode: 'steal', http_filter: { header_filter_jq: 'nosuchfn(1)' } } } } }));
    const r = startMirrord(target.name, ['-f', cfg], ['node', LOCAL]);
    const code = await r.done;
    assert.equal(code, 78, r.out());
    assert.match(
      r.out(),
      /^mirrord: invalid configuration in .*: feature\.network\.incoming\.http_filter\.header_filter_jq: not a valid jq expression: nosuchfn\/1 is not defined\./m,
    );
  });
});
