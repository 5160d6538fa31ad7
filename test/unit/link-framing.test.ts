/**
 * The link's framing (common/link/frame-reader.ts, FramedLink.send, ApStream credit): frames split
 * at every byte, many frames in one read, empty payloads, DATA kept as subarrays of the reads, and
 * back-pressure over a real unix socket between AgentConnection and serveAgent.
 */
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import {
  AP_INITIAL_WINDOW,
  AP_MAX_DATA_CHUNK,
  ApFrameReader,
  ApKind,
  ApProtocolError,
  encodeCredit,
  encodeEof,
  encodeFrame,
  encodeRequest,
  type ApFrame,
} from '../../common/protocol/agent/index.js';
import { LinkFrameReader } from '../../common/link/frame-reader.js';
import { FramedLink } from '../../common/link/framed-link.js';
import { AgentLinkError } from '../../common/link/errors.js';
import { AgentConnection } from '../../src/agent-link/connection.js';
import { serveAgent } from '../../agent/src/server.js';
import type { ApStream } from '../../common/link/stream.js';

interface Got {
  kind: number;
  channel: number;
  payload: Buffer;
  /** DATA only: the pieces as delivered. */
  pieces?: Buffer[];
}

function collector(): { reader: LinkFrameReader; got: Got[] } {
  const got: Got[] = [];
  const reader = new LinkFrameReader({
    frame: (f) => got.push({ kind: f.kind, channel: f.channel, payload: Buffer.from(f.payload) }),
    data: (channel, pieces, length) => {
      const payload = Buffer.concat(pieces);
      assert.equal(payload.length, length, 'length matches the pieces');
      got.push({ kind: ApKind.DATA, channel, payload, pieces });
    },
  });
  return { reader, got };
}

const same = (got: Got[], want: ApFrame[]) =>
  assert.deepEqual(
    got.map((g) => [g.kind, g.channel, g.payload.toString('hex')]),
    want.map((w) => [w.kind, w.channel, w.payload.toString('hex')]),
  );

const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

// A mix of every shape: JSON, binary, empty payloads, a DATA frame larger than most reads.
const FRAMES = [
  encodeRequest(7, 'agent.info', {}),
  encodeFrame(ApKind.DATA, 1, pattern(300, 1)),
  encodeFrame(ApKind.DATA, 3, Buffer.alloc(0)),
  encodeCredit(1, 300),
  encodeEof(5),
  encodeFrame(ApKind.DATA, 0xfffffffe, pattern(17, 2)),
];
const WIRE = Buffer.concat(FRAMES);
const REFERENCE = new ApFrameReader().push(WIRE);

describe('LinkFrameReader', () => {
  it('gives the reference reader’s frames with the bytes split at every offset', () => {
    for (let at = 0; at <= WIRE.length; at++) {
      const { reader, got } = collector();
      reader.push(WIRE.subarray(0, at));
      reader.push(WIRE.subarray(at));
      same(got, REFERENCE);
      assert.equal(reader.pending, 0, `split at ${at}`);
    }
  });

  it('gives the same frames one byte at a time, and holds the right count in between', () => {
    const { reader, got } = collector();
    for (let i = 0; i < WIRE.length; i++) {
      reader.push(WIRE.subarray(i, i + 1));
      const done = new ApFrameReader();
      const complete = done.push(WIRE.subarray(0, i + 1));
      assert.equal(got.length, complete.length, `after byte ${i}`);
      assert.equal(reader.pending, done.pending, `pending after byte ${i}`);
    }
    same(got, REFERENCE);
  });

  it('matches the reference on random frame sequences in random reads (seeded)', () => {
    let s = 12345;
    const rnd = (n: number) => (s = (s * 1103515245 + 12345) >>> 0) % n >>> 0;
    for (let round = 0; round < 300; round++) {
      const frames = Array.from({ length: 1 + rnd(12) }, () =>
        rnd(3) === 0 ? encodeCredit(rnd(100), rnd(1 << 20)) : encodeFrame(ApKind.DATA, rnd(1000), pattern(rnd(3) === 0 ? 0 : rnd(70_000), rnd(256))),
      );
      const wire = Buffer.concat(frames);
      const { reader, got } = collector();
      for (let at = 0; at < wire.length; ) {
        const n = 1 + rnd(rnd(2) === 0 ? 16 : 100_000);
        reader.push(wire.subarray(at, at + n));
        at += n;
      }
      same(got, new ApFrameReader().push(wire));
      assert.equal(reader.pending, 0);
    }
  });

  it('delivers many frames of one read in order, DATA as views of that read', () => {
    const frames = Array.from({ length: 1000 }, (_, i) => encodeFrame(ApKind.DATA, 2 * i + 1, pattern(i % 50, i)));
    const chunk = Buffer.concat(frames);
    const { reader, got } = collector();
    reader.push(chunk);
    assert.equal(got.length, 1000);
    same(got, new ApFrameReader().push(chunk));
    for (const g of got) for (const p of g.pieces!) assert.equal(p.buffer, chunk.buffer, 'a piece is a view of the read, not a copy');
  });

  it('keeps a DATA frame that spans reads as one view per read (no copy)', () => {
    const frame = encodeFrame(ApKind.DATA, 9, pattern(200_000, 3));
    const reads = [frame.subarray(0, 5), frame.subarray(5, 65_536), frame.subarray(65_536, 131_072), frame.subarray(131_072)].map((b) => Buffer.from(b));
    const { reader, got } = collector();
    for (const r of reads) reader.push(r);
    assert.equal(got.length, 1);
    const pieces = got[0]!.pieces!;
    // The header is split over the first two reads; the payload begins in the second.
    assert.deepEqual(
      pieces.map((p) => p.buffer),
      reads.slice(1).map((r) => r.buffer),
    );
    assert.ok(got[0]!.payload.equals(frame.subarray(9)));
  });

  it('hands empty payloads on as such', () => {
    const { reader, got } = collector();
    reader.push(Buffer.concat([encodeFrame(ApKind.DATA, 1, Buffer.alloc(0)), encodeEof(1), encodeFrame(ApKind.DATA, 3, Buffer.alloc(0))]));
    assert.deepEqual(
      got.map((g) => [g.kind, g.channel, g.payload.length, g.pieces?.length]),
      [
        [ApKind.DATA, 1, 0, 0],
        [ApKind.EOF, 1, 0, undefined],
        [ApKind.DATA, 3, 0, 0],
      ],
    );
  });

  it('rejects a short length, an oversize payload and an unknown kind, whole or split', () => {
    const short = Buffer.from([4, 0, 0, 0, 8, 0, 0, 0, 0]);
    const oversize = Buffer.alloc(9);
    oversize.writeUInt32LE(5 + 2 * 1024 * 1024, 0);
    oversize[4] = ApKind.DATA;
    const unknown = Buffer.from([5, 0, 0, 0, 99, 1, 0, 0, 0]);
    for (const [bad, msg] of [
      [short, /shorter than its header/],
      [oversize, /exceeds the maximum/],
      [unknown, /unknown frame kind 99/],
    ] as const) {
      assert.throws(() => collector().reader.push(bad), msg);
      for (let at = 1; at < bad.length; at++) {
        const { reader } = collector();
        assert.throws(
          () => {
            reader.push(bad.subarray(0, at));
            reader.push(bad.subarray(at));
          },
          (e: unknown) => e instanceof ApProtocolError && msg.test(e.message),
        );
      }
    }
  });

  it('stops delivering once halted, even mid-read', () => {
    const got: number[] = [];
    const reader: LinkFrameReader = new LinkFrameReader({
      frame: (f) => {
        got.push(f.channel);
        if (f.channel === 2) reader.halt();
      },
      data: () => assert.fail('no DATA after halt'),
    });
    reader.push(Buffer.concat([encodeEof(1), encodeEof(2), encodeEof(3), encodeFrame(ApKind.DATA, 5, Buffer.alloc(10))]));
    assert.deepEqual(got, [1, 2]);
  });
});

// ---- real sockets ----

async function socketPair(dir: string, name: string): Promise<[net.Socket, net.Socket, () => Promise<void>]> {
  const p = path.join(dir, name);
  const server = net.createServer();
  server.listen(p);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.connect(p);
  const [b] = await accepted;
  await once(a, 'connect').catch(() => undefined);
  return [a, b, () => new Promise<void>((r) => server.close(() => r()))];
}

test('FramedLink.send writes the header and the payload of a frame as the frame’s bytes', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-link-'));
  const [a, b, close] = await socketPair(dir, 's');
  try {
    const frames: Got[] = [];
    const link = new FramedLink(a, { onFrame: () => undefined, onClose: () => undefined });
    const peer = new FramedLink(b, {
      onFrame: (f) => frames.push({ kind: f.kind, channel: f.channel, payload: Buffer.from(f.payload) }),
      onClose: () => undefined,
    });
    const payload = pattern(100_000, 5);
    const header = encodeFrame(ApKind.DATA, 3, payload).subarray(0, 9);
    assert.equal(link.send(header, payload), true);
    assert.equal(link.send(encodeEof(3)), true);
    while (frames.length < 2) await new Promise((r) => setTimeout(r, 5));
    same(frames, [
      { kind: ApKind.DATA, channel: 3, payload },
      { kind: ApKind.EOF, channel: 3, payload: Buffer.alloc(0) },
    ]);
    link.destroy(new AgentLinkError('ELINK', 'done'));
    peer.end();
  } finally {
    a.destroy();
    b.destroy();
    await close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** AgentConnection and serveAgent over a real unix socket; outgoing connections reach 127.0.0.1. */
async function unixLink(dir: string) {
  const [a, b, close] = await socketPair(dir, 'link');
  const agentDone = serveAgent(b, { token: 't', targetPid: process.pid });
  const conn = await AgentConnection.connect(a, { token: 't' });
  return {
    conn,
    linkQueued: () => a.writableLength + b.writableLength,
    done: async () => {
      conn.close();
      await agentDone;
      await close();
    },
  };
}

const settle = async (read: () => number) => {
  // Until the count stops moving for 200 ms: the sender has been stopped.
  let last = -1;
  while (read() !== last) {
    last = read();
    await new Promise((r) => setTimeout(r, 200));
  }
  return last;
};

test('back-pressure over a unix socket: a sink that stops reading stops the writer; resuming delivers every byte', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-link-'));
  const received: Buffer[] = [];
  let sinkSocket: net.Socket | undefined;
  const sink = net.createServer((s) => {
    sinkSocket = s;
    s.pause();
    s.on('data', (d: Buffer) => received.push(d));
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const link = await unixLink(dir);
  try {
    const stream = await link.conn.connectTcp('127.0.0.1', (sink.address() as net.AddressInfo).port);
    const total = 64 * 1024 * 1024;
    const chunk = pattern(AP_MAX_DATA_CHUNK, 11);
    let accepted = 0;
    let peakQueued = 0;
    const hash = createHash('sha256');
    const pump = () => {
      while (accepted < total) {
        accepted += chunk.length;
        hash.update(chunk);
        peakQueued = Math.max(peakQueued, link.linkQueued());
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      stream.end();
    };
    pump();
    const stalledAt = await settle(() => accepted);
    // Kernel buffers (loopback TCP autotunes to a few MiB) plus one window and the streams' buffers.
    assert.ok(stalledAt < total / 2, `the writer was stopped at ${stalledAt} bytes of ${total}`);
    // Credit bounds what is unacknowledged to one window; writableLength also counts a writev
    // batch the kernel has taken part of (libuv completes it as one request), hence the slack.
    assert.ok(peakQueued <= 2 * AP_INITIAL_WINDOW, `about one window queued on the link (${peakQueued} bytes)`);
    while (!sinkSocket) await new Promise((r) => setTimeout(r, 5));
    sinkSocket.resume();
    await once(sinkSocket, 'end');
    const got = Buffer.concat(received);
    assert.equal(got.length, total);
    assert.equal(createHash('sha256').update(got).digest('hex'), hash.digest('hex'));
  } finally {
    sinkSocket?.destroy();
    await link.done();
    await new Promise<void>((r) => sink.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('back-pressure the other way: a local reader that pauses stops the remote sender', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-link-'));
  const total = 64 * 1024 * 1024;
  let sent = 0;
  const chunk = pattern(64 * 1024, 13);
  const sink = net.createServer((s) => {
    s.on('error', () => undefined);
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const link = await unixLink(dir);
  try {
    const stream: ApStream = await link.conn.connectTcp('127.0.0.1', (sink.address() as net.AddressInfo).port);
    // Not reading at all: only the window and the stream's own buffer may be taken from the sender.
    const stalledAt = await settle(() => sent);
    assert.ok(stalledAt < total / 2, `the sender was stopped at ${stalledAt} bytes of ${total}`);
    assert.ok(stream.readableLength <= AP_INITIAL_WINDOW + AP_MAX_DATA_CHUNK, `the stream holds ${stream.readableLength} bytes`);
    let got = 0;
    let bad = false;
    stream.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; i += 4096) if (d[i] !== chunk[(got + i) % chunk.length]) bad = true;
      got += d.length;
    });
    await once(stream, 'end');
    assert.equal(got, total);
    assert.equal(bad, false, 'bytes arrived in order');
  } finally {
    await link.done();
    await new Promise<void>((r) => sink.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});
