import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { tickBatched } from '../../agent/src/stdio.js';

/** A connected unix socket pair: what the agent writes, and what its reader gets. */
async function pair(): Promise<{ writer: net.Socket; reader: net.Socket; close(): void }> {
  const sockPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'mirrord-stdio-')), 's');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sockPath, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const writer = net.connect(sockPath);
  await new Promise((r) => writer.once('connect', r));
  const reader = await accepted;
  return { writer, reader, close: () => (writer.destroy(), reader.destroy(), server.close()) };
}

/** Counts what reaches the socket's own write methods: one call is one system call. */
function countWrites(sock: net.Socket): { calls: number; chunks: number } {
  const seen = { calls: 0, chunks: 0 };
  const s = sock as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const w = s._write.bind(sock);
  const wv = s._writev.bind(sock);
  s._write = (...a) => (seen.calls++, seen.chunks++, w(...a));
  s._writev = (...a) => (seen.calls++, (seen.chunks += (a[0] as unknown[]).length), wv(...a));
  return seen;
}

test('the writes of one tick reach the socket as one writev, in order', async () => {
  const p = await pair();
  try {
    const seen = countWrites(p.writer);
    const out = tickBatched(p.writer);
    const got: Buffer[] = [];
    p.reader.on('data', (d: Buffer) => got.push(d));
    const parts = Array.from({ length: 50 }, (_, i) => Buffer.from(`frame ${i};`));
    for (const b of parts) out.write(b);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen, { calls: 1, chunks: 50 });
    assert.equal(Buffer.concat(got).toString(), Buffer.concat(parts).toString());
    // A later tick is a batch of its own.
    out.write(Buffer.from('a'));
    out.write(Buffer.from('b'));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen, { calls: 2, chunks: 52 });
  } finally {
    p.close();
  }
});

test("a slow reader holds the writer back (the socket's backpressure), and end reaches it after every byte", async () => {
  const p = await pair();
  try {
    const out = tickBatched(p.writer);
    p.reader.pause();
    const chunk = Buffer.alloc(256 * 1024, 7);
    let accepted = 0;
    while (out.write(chunk) && accepted < 1000) accepted++;
    assert.ok(accepted < 1000, 'write() reports backpressure while the reader reads nothing');
    const ended = new Promise<void>((r) => out.end(r));
    let total = 0;
    p.reader.on('data', (d: Buffer) => (total += d.length));
    const readerEnd = new Promise((r) => p.reader.once('end', r));
    p.reader.resume();
    await ended;
    await readerEnd;
    assert.equal(total, (accepted + 1) * chunk.length);
  } finally {
    p.close();
  }
});

test('the socket failing destroys the writable with its error', async () => {
  const p = await pair();
  try {
    const out = tickBatched(p.writer);
    const failed = new Promise<Error>((r) => out.once('error', r));
    p.writer.destroy(new Error('EPIPE from the shim'));
    assert.equal((await failed).message, 'EPIPE from the shim');
    assert.ok(out.destroyed);
  } finally {
    p.close();
  }
});
