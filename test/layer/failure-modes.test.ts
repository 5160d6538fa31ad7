/**
 * The layer tier, part 3: what happens when there is no session, when the intproxy is dead or
 * hung, and what the layer prints (nothing by default; prefixed lines when asked).
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { FakeIntproxy } from './fake-intproxy.js';
import { GREETING, buildLayer, cTest, describeRun, layerEnv, lines, programEnv, run, startServers, type Servers } from './harness.js';

let servers: Servers;
let fake: FakeIntproxy | undefined;

before(async () => {
  buildLayer();
  servers = await startServers();
});
after(() => servers.close());
afterEach(async () => {
  await fake?.stop();
  fake = undefined;
});

/** A loopback port nothing listens on any more. */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

describe('no session', () => {
  for (const [label, addr] of [
    ['unset', undefined],
    ['empty', ''],
  ] as const) {
    it(`MIRRORD_LAYER_ADDR ${label}: everything native, nothing sent`, async () => {
      fake = await FakeIntproxy.start({ dns: { localhost: ['10.99.99.99'] } });
      const env = layerEnv(addr, { MIRRORD_LAYER_LOG: 'debug' });
      const args = ['v4', '127.0.0.1', String(servers.tcpPort)];
      const r = await run(cTest('t_connect'), args, env);
      const native = await run(cTest('t_connect'), args, programEnv({}));
      assert.equal(r.code, 0, describeRun(r));
      assert.equal(lines(r.stdout)[3]?.replace(/:\d+$/, ''), 'dup2_peer=127.0.0.1');
      assert.ok(r.stdout.includes(`read=${GREETING}`));
      assert.equal(r.stdout, native.stdout);
      const g = await run(cTest('t_resolve'), ['gai_stream=localhost'], env);
      assert.ok(g.stdout.includes('addr=127.0.0.1:80'), describeRun(g));
      assert.ok(!r.stderr.includes('mirrord-layer') || /pass-through/.test(r.stderr), describeRun(r));
      assert.deepEqual(fake.requests, []);
    });
  }
});

describe('intproxy unavailable', () => {
  it('dead intproxy: connect fails fast with ENETUNREACH, getaddrinfo with EAI_AGAIN, silently', async () => {
    const env = layerEnv(`127.0.0.1:${await closedPort()}`);
    const c = await run(cTest('t_connect'), ['v4', '10.77.0.5', '80'], env);
    assert.deepEqual(lines(c.stdout), ['connect=-1 errno=ENETUNREACH'], describeRun(c));
    assert.ok(c.ms < 3000, `took ${c.ms} ms`);
    const g = await run(cTest('t_resolve'), ['gai=only-remote.test', 'hbn=only-remote.test'], env);
    assert.deepEqual(lines(g.stdout), ['gai only-remote.test rc=-3 (Temporary failure in name resolution)', 'hbn only-remote.test h_errno=2']);
    assert.equal(c.stderr + g.stderr, '', 'logging is off by default');
  });

  it('dead intproxy with MIRRORD_LAYER_LOG=error: exactly one error line per process', async () => {
    const env = layerEnv(`127.0.0.1:${await closedPort()}`, { MIRRORD_LAYER_LOG: 'error' });
    const g = await run(cTest('t_resolve'), ['gai=only-remote.test', 'gai=only-remote.test', 'hbn=only-remote.test'], env);
    assert.equal(g.code, 0, describeRun(g));
    const errs = lines(g.stderr);
    assert.equal(errs.length, 1, describeRun(g));
    assert.match(errs[0]!, new RegExp(`^mirrord-layer\\[${g.pid}\\]: intproxy at 127\\.0\\.0\\.1:\\d+ unavailable: Connection refused$`));
  });

  it('hung intproxy: the receive timeout fails the call instead of hanging', async () => {
    fake = await FakeIntproxy.start({ mute: true });
    const env = layerEnv(fake.addr, { MIRRORD_LAYER_TIMEOUT_MS: '700' });
    const c = await run(cTest('t_connect'), ['v4', '10.77.0.5', '80'], env, 10000);
    assert.deepEqual(lines(c.stdout), ['connect=-1 errno=ENETUNREACH'], describeRun(c));
    assert.ok(c.ms >= 600 && c.ms < 5000, `took ${c.ms} ms`);
    assert.equal(fake.hellos().length, 1, 'the HELLO was sent, then nothing came back');
  });

  it('intproxy refusing the HELLO: calls fail like an unreachable intproxy', async () => {
    fake = await FakeIntproxy.start({ helloStatus: -13 });
    const c = await run(cTest('t_connect'), ['v4', '10.77.0.5', '80'], layerEnv(fake.addr));
    assert.deepEqual(lines(c.stdout), ['connect=-1 errno=ENETUNREACH'], describeRun(c));
    assert.deepEqual(fake.calls(), []);
  });
});

describe('logging', () => {
  it('MIRRORD_LAYER_LOG=debug: every line on stderr carries the mirrord-layer[PID] prefix', async () => {
    fake = await FakeIntproxy.start({ connect: { '10.77.0.5:80': { viaPort: servers.tcpPort } } });
    const r = await run(cTest('t_connect'), ['v4', '10.77.0.5', '80'], layerEnv(fake.addr, { MIRRORD_LAYER_LOG: 'debug' }));
    assert.equal(r.code, 0, describeRun(r));
    const errs = lines(r.stderr);
    assert.ok(errs.length >= 2, describeRun(r));
    for (const l of errs) assert.ok(l.startsWith(`mirrord-layer[${r.pid}]: `), l);
    assert.ok(
      errs.some((l) => /connect fd \d+ to 10\.77\.0\.5:80: handled/.test(l)),
      describeRun(r),
    );
    assert.equal(r.stdout.split('\n')[0], 'connect=0 errno=0');
  });
});
