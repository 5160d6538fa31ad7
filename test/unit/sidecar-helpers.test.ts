import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { validateConfig } from '../../src/config/load.js';
import { silentLogger } from '../../common/log.js';
import { CAPTURE_UID, captureRules } from '../../sidecar/src/capture.js';
import { answer, startDnsResponder, type DnsAgent } from '../../sidecar/src/dns-responder.js';
import dgram from 'node:dgram';

const INIT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sidecar/build/mirrord-init');

/** Runs the real mirrord-init against a lifeline server of our own; `drop` closes the lifeline. */
async function runInit(argv: string[], o: { lifeline?: boolean; afterStart?: (ctl: { drop(): void; signal(s: NodeJS.Signals): void }) => void } = {}) {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = o.lifeline === false ? 1 : (server.address() as net.AddressInfo).port;
  const child = spawn(INIT, [String(port), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const connected = new Promise<void>((resolve) => server.once('connection', () => resolve()));
  if (o.lifeline !== false) {
    await connected;
    // The command prints "up" once it runs, so signals are not sent before its handlers exist.
    if (o.afterStart) {
      await new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('up') && resolve()));
      o.afterStart({ drop: () => held.forEach((s) => s.destroy()), signal: (s) => child.kill(s) });
    }
  }
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  server.close();
  return { code, out, err };
}

describe('mirrord-init (PID 1 of the user container)', () => {
  it("exits with its command's status, and 128 + signal when a signal ended it", async () => {
    assert.equal((await runInit(['sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await runInit(['sh', '-c', 'kill -USR1 $$'])).code, 128 + 10);
    assert.equal((await runInit(['no-such-program-here'])).code, 127);
  });

  it('passes signals on to the command', async () => {
    const r = await runInit(['sh', '-c', 'trap "echo got-term; exit 9" TERM; echo up; while :; do sleep 0.1; done'], {
      afterStart: (c) => c.signal('SIGTERM'),
    });
    assert.equal(r.code, 9);
    assert.match(r.out, /got-term/);
  });

  it('ends the command when the lifeline to the sidecar drops (the session died)', async () => {
    const r = await runInit(['sh', '-c', 'echo up; exec sleep 1000'], { afterStart: (c) => c.drop() });
    assert.equal(r.code, 128 + 15);
    assert.match(r.err, /the mirrord session ended/);
  });

  it('refuses to start the command without a sidecar', async () => {
    const r = await runInit(['sh', '-c', 'echo should-not-run'], { lifeline: false });
    assert.equal(r.code, 125);
    assert.equal(r.out, '');
    assert.match(r.err, /sidecar is not reachable/);
  });
});

describe('namespace capture', () => {
  it("skips its own helper and loopback, redirects DNS first (Docker's resolver is 127.0.0.11), then all TCP", () => {
    assert.deepEqual(captureRules(4, { tcpPort: 4000, dns: { udpPort: 5000, tcpPort: 5001 } }), [
      ['-m', 'owner', '--uid-owner', String(CAPTURE_UID), '-j', 'RETURN'],
      ['-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5000'],
      ['-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5001'],
      ['-d', '127.0.0.0/8', '-j', 'RETURN'],
      ['-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'],
    ]);
    assert.deepEqual(captureRules(6, { tcpPort: 4000 }).at(-2), ['-d', '::1/128', '-j', 'RETURN']);
    assert.equal(
      captureRules(4, { dns: { udpPort: 1, tcpPort: 2 } }).some((r) => r.includes('4000')),
      false,
      'outgoing.tcp off: no TCP redirect',
    );
  });

  it("answers A and AAAA with the agent's lookup, NXDOMAIN for unknown names, empty for other types", async () => {
    const asked: string[] = [];
    const agent: DnsAgent = {
      async request(_m, p) {
        asked.push(`${p.name}/${p.family}`);
        if (p.name === 'missing') throw Object.assign(new Error('no'), { code: 'ENOTFOUND' });
        return { addresses: p.family === 4 ? [{ address: '10.1.2.3', family: 4 }] : [{ address: 'fd00::5', family: 6 }], canonname: p.name };
      },
    };
    const ask = async (name: string, type: 'A' | 'AAAA' | 'MX') =>
      dnsPacket.decode(
        (await answer(
          agent,
          dnsPacket.encode({ type: 'query', id: 42, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] }),
          silentLogger,
        ))!,
      );
    const a = await ask('redis', 'A');
    assert.equal(a.id, 42);
    assert.deepEqual(
      a.answers?.map((x) => [x.type, (x as { data?: unknown }).data]),
      [['A', '10.1.2.3']],
    );
    assert.deepEqual(
      (await ask('redis', 'AAAA')).answers?.map((x) => (x as { data?: unknown }).data),
      ['fd00::5'],
    );
    assert.equal(((await ask('missing', 'A')).flags ?? 0) & 0xf, 3);
    assert.deepEqual((await ask('redis', 'MX')).answers, []);
    assert.deepEqual(asked, ['redis/4', 'redis/6', 'missing/4']);
    assert.equal(await answer(agent, Buffer.from('junk'), silentLogger), undefined);
  });
});

describe('the DNS responder over real sockets', () => {
  it('answers over UDP and over TCP (length-prefixed, two queries on one connection)', async () => {
    const agent: DnsAgent = {
      request: async (_m, p) => ({ addresses: [{ address: p.name === 'a' ? '10.0.0.1' : '10.0.0.2', family: 4 }], canonname: p.name }),
    };
    const dns = await startDnsResponder(agent, silentLogger);
    try {
      const query = (name: string, id: number) => dnsPacket.encode({ type: 'query', id, questions: [{ type: 'A', name, class: 'IN' }] });
      const data = (b: Buffer) => dnsPacket.decode(b).answers?.map((x) => (x as { data?: unknown }).data);
      const udp = dgram.createSocket('udp4');
      const reply = new Promise<Buffer>((resolve) => udp.once('message', resolve));
      udp.send(query('a', 1), dns.udpPort, '127.0.0.1');
      assert.deepEqual(data(await reply), ['10.0.0.1']);
      udp.close();

      const sock = net.connect(dns.tcpPort, '127.0.0.1');
      const frames: Buffer[] = [];
      let buf = Buffer.alloc(0);
      const two = new Promise<void>((resolve) =>
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            frames.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
            buf = buf.subarray(2 + frames.at(-1)!.length);
          }
          if (frames.length === 2) resolve();
        }),
      );
      const framed = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
      sock.write(Buffer.concat([framed(query('a', 2)), framed(query('b', 3))]));
      await two;
      sock.destroy();
      assert.deepEqual(
        frames.map((f) => [dnsPacket.decode(f).id, data(f)]),
        [
          [2, ['10.0.0.1']],
          [3, ['10.0.0.2']],
        ],
      );
    } finally {
      dns.close();
    }
  });
});

describe('container config keys', () => {
  it('container.mounts: sizes with units, a bare boolean, and one error by path for a bad size', async () => {
    const cfg = async (container: object) => validateConfig({ container }).container;
    assert.deepEqual((await cfg({ mounts: { max_size: '512KiB' } }))?.mounts, { sync: true, max_size: 512 * 1024 });
    assert.deepEqual((await cfg({ mounts: { max_size: 1000 } }))?.mounts, { sync: true, max_size: 1000 });
    assert.equal((await cfg({ mounts: false }))?.mounts?.sync, false);
    assert.equal((await cfg({ capture: 'namespace' }))?.capture, 'namespace');
    await assert.rejects(cfg({ mounts: { max_size: 'lots' } }), /container\.mounts\.max_size: expected a size like 512KiB/);
  });
});
