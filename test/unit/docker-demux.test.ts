import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough, Writable } from 'node:stream';
import { demuxAttach } from '../../src/platforms/docker/demux.js';

const frame = (type: number, payload: Buffer) => {
  const h = Buffer.alloc(8);
  h[0] = type;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
};

function collect(): { w: Writable; chunks: Buffer[]; text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  return { w, chunks, text: () => Buffer.concat(chunks).toString() };
}

describe('Docker attach demultiplexing', () => {
  const wire = Buffer.concat([frame(1, Buffer.from('hello ')), frame(2, Buffer.from('oops\n')), frame(1, Buffer.alloc(0)), frame(1, Buffer.from('world'))]);

  it('gives the same bytes for every place a read can split the stream', async () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      for (const second of [cut, Math.min(wire.length, cut + 3)]) {
        const src = new PassThrough();
        const out = collect();
        const err = collect();
        demuxAttach(src, out.w, err.w);
        src.write(wire.subarray(0, cut));
        src.write(wire.subarray(cut, second));
        src.end(wire.subarray(second));
        await new Promise((r) => setImmediate(r));
        assert.equal(out.text(), 'hello world', `cut at ${cut}/${second}`);
        assert.equal(err.text(), 'oops\n', `cut at ${cut}/${second}`);
      }
    }
  });

  it('hands payloads on as views of the reads, not copies', async () => {
    const src = new PassThrough();
    const out = collect();
    demuxAttach(src, out.w, collect().w);
    const big = frame(1, Buffer.alloc(64 * 1024, 7));
    src.write(big);
    await new Promise((r) => setImmediate(r));
    assert.equal(out.chunks.length, 1);
    assert.equal(out.chunks[0]!.buffer, big.buffer, 'the payload shares the read buffer');
  });

  it('passes a stream that is not multiplexed through as it is', async () => {
    const src = new PassThrough();
    const out = collect();
    demuxAttach(src, out.w, collect().w);
    src.write(Buffer.from('plain text, no headers'));
    src.end(Buffer.from(' and more'));
    await new Promise((r) => setImmediate(r));
    assert.equal(out.text(), 'plain text, no headers and more');
  });

  it('pauses the source while stdout is full, and resumes on drain', async () => {
    const src = new PassThrough();
    const out = new PassThrough({ highWaterMark: 1024 });
    demuxAttach(src, out, collect().w);
    src.write(frame(1, Buffer.alloc(4096, 1)));
    await new Promise((r) => setImmediate(r));
    assert.equal(src.isPaused(), true, 'a full stdout pauses the attach stream');
    let got = 0;
    out.on('data', (d: Buffer) => (got += d.length));
    await new Promise((r) => setImmediate(r));
    assert.equal(got, 4096);
    assert.equal(src.isPaused(), false, 'drained: reading again');
  });
});
