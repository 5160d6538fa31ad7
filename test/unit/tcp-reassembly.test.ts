import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reassembler, type FlowKey, type TcpSegment } from '../../agent/src/incoming/tcp-reassembly.js';
import { decodePacket, FrameReader, openSniffer } from '../../agent/src/incoming/sniff.js';
import { PortTable } from '../../agent/src/incoming/ports.js';
import { mirrorCopies } from '../../agent/src/incoming/mirror-copy.js';
import type { ApStream } from '../../common/link/stream.js';
import { Writable } from 'node:stream';

/**
 * Passive mirror's stream rebuilding, from segments as a capture delivers them: out of order,
 * retransmitted, overlapping, across the 32-bit sequence wrap, with SYN, FIN and RST.
 */
interface Seen {
  key: FlowKey;
  bytes: Buffer[];
  how?: string;
}

function world(opts: { maxPending?: number; idleMs?: number; now?: () => number } = {}) {
  const flows: Seen[] = [];
  const r = new Reassembler({
    ...opts,
    open(key) {
      const f: Seen = { key, bytes: [] };
      flows.push(f);
      return {
        data: (c) => f.bytes.push(Buffer.from(c)),
        end: () => (f.how = 'end'),
        abort: (reason) => (f.how = `abort: ${reason}`),
      };
    },
  });
  return { r, flows, text: (i = 0) => Buffer.concat(flows[i]!.bytes).toString() };
}

const base = { src: '10.0.0.2', srcPort: 40000, dst: '10.0.0.1', dstPort: 8080, syn: false, fin: false, rst: false };
const seg = (seq: number, payload = '', more: Partial<TcpSegment> = {}): TcpSegment => ({ ...base, seq: seq >>> 0, payload: Buffer.from(payload), ...more });

/** A seeded shuffle, so a failure is reproducible. */
function shuffle<T>(a: T[], seed: number): T[] {
  const out = [...a];
  for (let i = out.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('TCP stream reassembly', () => {
  it('in order: the bytes, then the end at FIN; the key names the client', () => {
    const { r, flows, text } = world();
    r.push(seg(100, '', { syn: true }));
    r.push(seg(101, 'GET / '));
    r.push(seg(107, 'HTTP/1.1\r\n', { fin: true }));
    assert.equal(text(), 'GET / HTTP/1.1\r\n');
    assert.equal(flows[0]!.how, 'end');
    assert.deepEqual(flows[0]!.key, { remoteAddress: '10.0.0.2', remotePort: 40000, localAddress: '10.0.0.1', localPort: 8080 });
    assert.equal(r.size, 0, 'an ended connection is forgotten');
  });

  it('shuffled, duplicated and overlapping segments across the sequence wrap: every byte once, in order', () => {
    const message = Array.from({ length: 400 }, (_, i) => `line ${i}\n`).join('');
    for (let seed = 1; seed <= 20; seed++) {
      const { r, flows, text } = world();
      const isn = 0xffffff00;
      r.push(seg(isn, '', { syn: true }));
      const segs: TcpSegment[] = [];
      // Segments of varied sizes, some overlapping the previous one, some sent twice.
      for (let at = 0; at < message.length; ) {
        const len = 1 + ((at * 7 + seed) % 90);
        const from = Math.max(0, at - (seed % 3) * 5);
        segs.push(seg(isn + 1 + from, message.slice(from, at + len)));
        if ((at + seed) % 4 === 0) segs.push(seg(isn + 1 + at, message.slice(at, at + len)));
        at += len;
      }
      segs.push(seg(isn + 1 + message.length, '', { fin: true }));
      for (const s of shuffle(segs, seed)) r.push(s);
      assert.equal(text(), message, `seed ${seed}`);
      assert.equal(flows[0]!.how, 'end', `seed ${seed}: FIN ends the stream once every byte before it came`);
    }
  });

  it('a retransmitted SYN keeps the connection; a new ISN on the same ports is a new connection', () => {
    const { r, flows, text } = world();
    r.push(seg(1000, '', { syn: true }));
    r.push(seg(1001, 'abc'));
    r.push(seg(1000, '', { syn: true }));
    r.push(seg(1004, 'def'));
    assert.equal(text(), 'abcdef');
    assert.equal(flows.length, 1);
    r.push(seg(9000, '', { syn: true }));
    r.push(seg(9001, 'new'));
    assert.equal(flows.length, 2);
    assert.match(flows[0]!.how ?? '', /abort: the client port was reused/);
    assert.equal(text(1), 'new');
  });

  it('RST aborts; a connection whose SYN was not seen is ignored', () => {
    const { r, flows } = world();
    r.push(seg(5, 'mid-stream'));
    assert.equal(flows.length, 0, 'no SYN, no copy: there is no telling where its bytes start');
    r.push(seg(10, '', { syn: true }));
    r.push(seg(11, 'x'));
    r.push(seg(12, '', { rst: true }));
    assert.match(flows[0]!.how ?? '', /abort: connection reset/);
    assert.equal(r.size, 0);
  });

  it('a gap that never fills gives the copy up instead of growing without end', () => {
    const { r, flows } = world({ maxPending: 1000 });
    r.push(seg(0, '', { syn: true }));
    r.push(seg(1, 'a'));
    for (let i = 0; i < 20; i++) r.push(seg(100 + i * 100, 'y'.repeat(100)));
    assert.match(flows[0]!.how ?? '', /abort: a gap of lost packets did not fill/);
    assert.equal(Buffer.concat(flows[0]!.bytes).toString(), 'a');
  });

  it('FIN seen before the last bytes: the end waits for them', () => {
    const { r, flows, text } = world();
    r.push(seg(0, '', { syn: true }));
    r.push(seg(4, 'def', { fin: true }));
    assert.equal(flows[0]!.how, undefined);
    r.push(seg(1, 'abc'));
    assert.equal(text(), 'abcdef');
    assert.equal(flows[0]!.how, 'end');
  });

  it('idle connections are forgotten by the sweep', () => {
    let now = 0;
    const { r, flows } = world({ idleMs: 1000, now: () => now });
    r.push(seg(0, '', { syn: true }));
    now = 500;
    r.sweep();
    assert.equal(r.size, 1);
    now = 2000;
    r.sweep();
    assert.equal(r.size, 0);
    assert.match(flows[0]!.how ?? '', /abort: idle/);
  });
});

describe('captured packets', () => {
  const tcp = (sport: number, dport: number, seq: number, flags: number, payload: string) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(sport, 0);
    h.writeUInt16BE(dport, 2);
    h.writeUInt32BE(seq, 4);
    h[12] = 5 << 4;
    h[13] = flags;
    return Buffer.concat([h, Buffer.from(payload)]);
  };

  it('IPv4 (with options) and IPv6 to TCP segments; other protocols are skipped', () => {
    const t = tcp(40000, 8080, 0xdeadbeef, 0x18, 'hello');
    const ip4 = Buffer.alloc(24);
    ip4[0] = 0x46; // version 4, 24-byte header (one option word)
    ip4.writeUInt16BE(24 + t.length, 2);
    ip4[9] = 6;
    Buffer.from([172, 17, 0, 3, 172, 17, 0, 2]).copy(ip4, 12);
    // Ethernet padding after the IP packet must not become payload.
    const s4 = decodePacket(Buffer.concat([ip4, t, Buffer.alloc(6)]))!;
    assert.deepEqual(
      { ...s4, payload: s4.payload.toString() },
      { src: '172.17.0.3', srcPort: 40000, dst: '172.17.0.2', dstPort: 8080, seq: 0xdeadbeef, syn: false, fin: false, rst: false, payload: 'hello' },
    );
    const ip6 = Buffer.alloc(40);
    ip6[0] = 0x60;
    ip6.writeUInt16BE(t.length, 4);
    ip6[6] = 6;
    Buffer.from('fd000000000000000000000000000003', 'hex').copy(ip6, 8);
    Buffer.from('00000000000000000000000000000001', 'hex').copy(ip6, 24);
    const s6 = decodePacket(Buffer.concat([ip6, tcp(1, 2, 3, 0x03, '')]))!;
    assert.equal(s6.src, 'fd00::3');
    assert.equal(s6.dst, '::1');
    assert.equal(s6.syn && s6.fin, true);
    const udp = Buffer.from(ip4);
    udp[9] = 17;
    assert.equal(decodePacket(Buffer.concat([udp, t])), undefined);
  });

  it("the helper's frames, split anywhere across reads", () => {
    const frames = [Buffer.alloc(0), Buffer.from('one'), Buffer.from('second frame')];
    const wire = Buffer.concat(frames.flatMap((f) => [Buffer.from([0, 0, 0, f.length]), f]));
    for (let cut = 0; cut <= wire.length; cut++) {
      const got: string[] = [];
      const reader = new FrameReader((f) => got.push(f.toString()));
      reader.push(wire.subarray(0, cut));
      reader.push(wire.subarray(cut));
      assert.deepEqual(got, ['', 'one', 'second frame'], `cut at ${cut}`);
    }
  });
});

describe('mirror subscription', () => {
  const sub = (port: number) => ({
    session: 's',
    client: 'c',
    port,
    mode: 'mirror' as const,
    since: new Date(),
    open: () => {
      throw new Error('no connection expected');
    },
    own: () => undefined,
  });

  it('a capture that cannot start fails the subscription with one line, and leaves the port unsubscribed', async () => {
    const table = new PortTable({ chain: 'MIRRORD_unit', capture: openSniffer(undefined, '/nonexistent/mirrord-sniff') });
    await assert.rejects(table.subscribe(sub(8080)), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EPERM');
      assert.match(err.message, /^cannot capture port 8080 for mirroring: .*\/nonexistent\/mirrord-sniff.*ENOENT.* \(the agent needs NET_RAW\)$/);
      return true;
    });
    assert.deepEqual(table.sessions(), []);
    assert.equal(table.hasRules, false, 'mirroring never touches iptables');
    await table.close();
  });
});

describe('mirror capture restarts', () => {
  it('a capture that dies under a mirroring session is started again', async () => {
    const opened: Array<(reason: string) => void> = [];
    const table = new PortTable({
      chain: 'MIRRORD_unit',
      capture: (_port, _seg, onEnd) => {
        opened.push(onEnd);
        return { ready: Promise.resolve(), close: () => undefined };
      },
    });
    const s = {
      session: 's',
      client: 'c',
      port: 8080,
      mode: 'mirror' as const,
      since: new Date(),
      open: () => {
        throw new Error('no connection expected');
      },
      own: () => undefined,
    };
    await table.subscribe(s);
    assert.equal(opened.length, 1);
    opened[0]!('killed');
    for (let i = 0; i < 40 && opened.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(opened.length, 2, 'a new capture after the first one died');
    await table.unsubscribe(s);
    opened[1]!('stopped');
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(opened.length, 2, 'no capture once nobody mirrors the port');
    await table.close();
  });
});

describe('mirror copy without a filter', () => {
  it("one batch of a connection's segments goes out as one write, in order, ended after it", async () => {
    const writes: string[] = [];
    let ended = false;
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        writes.push(chunk.toString());
        cb();
      },
      final(cb) {
        ended = true;
        cb();
      },
    });
    const sink = mirrorCopies([{ session: 's', open: () => Object.assign(stream, { resume: () => stream }) as unknown as ApStream }], 'c');
    // One read of the capture's output: three segments, delivered synchronously.
    for (const s of ['GET /a HTTP/1.1\r\n\r\n', 'GET /b HTTP/1.1\r\n\r\n', 'GET /c']) sink.data(Buffer.from(s));
    await new Promise((r) => setImmediate(r));
    // The next read: the rest, and the FIN in the same batch.
    sink.data(Buffer.from(' HTTP/1.1\r\n\r\n'));
    sink.end();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(writes, ['GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c', ' HTTP/1.1\r\n\r\n']);
    assert.equal(ended, true);
  });
});
