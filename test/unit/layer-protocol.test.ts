/**
 * The TS LP codec against the shared byte vectors (the C codec is checked against the same file
 * by `make -C layer test-c`), plus malformed input.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  LP_MAX_FRAME,
  LpFrameReader,
  LpProtocolError,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type LpFrame,
  type LpRequest,
  type LpResponse,
} from '../../common/protocol/layer/index.js';

interface Vector {
  name: string;
  direction: 'request' | 'response';
  message: LpRequest | LpResponse;
  hex: string;
}
const file = JSON.parse(readFileSync(new URL('../vectors/layer-protocol.json', import.meta.url), 'utf8')) as {
  vectors: Vector[];
  malformed: { name: string; hex: string }[];
  lengths: { name: string; header: string; ok: boolean }[];
};

function oneFrame(hex: string): LpFrame {
  const frames = new LpFrameReader().push(Buffer.from(hex, 'hex'));
  assert.equal(frames.length, 1);
  return frames[0]!;
}

/** Malformed frames must fail whichever way they are read; the reader itself may also refuse. */
function decodeAny(hex: string): unknown {
  const f = oneFrame(hex);
  return f.type & 0x8000 ? decodeResponse(f) : decodeRequest(f);
}

describe('LP codec vectors', () => {
  assert.ok(file.vectors.length >= 12);
  for (const v of file.vectors) {
    it(`decodes: ${v.name}`, () => {
      const f = oneFrame(v.hex);
      const got = v.direction === 'request' ? decodeRequest(f) : decodeResponse(f);
      assert.deepEqual(got, v.message);
    });
    it(`encodes: ${v.name}`, () => {
      const got = v.direction === 'request' ? encodeRequest(v.message as LpRequest) : encodeResponse(v.message as LpResponse);
      assert.equal(got.toString('hex'), v.hex);
    });
  }
});

describe('LP codec malformed input', () => {
  for (const m of file.malformed) {
    it(`rejects: ${m.name}`, () => {
      assert.throws(() => decodeAny(m.hex), LpProtocolError);
    });
  }
  for (const l of file.lengths) {
    it(`frame length: ${l.name}`, () => {
      const push = () => new LpFrameReader().push(Buffer.from(l.header, 'hex'));
      if (l.ok) assert.deepEqual(push(), []);
      else assert.throws(push, LpProtocolError);
    });
  }

  it('a request type is not a response and the other way round', () => {
    const hello = file.vectors.find((v) => v.direction === 'request')!;
    assert.throws(() => decodeResponse(oneFrame(hello.hex)), LpProtocolError);
    const helloOk = file.vectors.find((v) => v.direction === 'response')!;
    assert.throws(() => decodeRequest(oneFrame(helloOk.hex)), LpProtocolError);
  });

  it('reassembles frames split across chunks, byte by byte, and several in one chunk', () => {
    const all = Buffer.concat(file.vectors.map((v) => Buffer.from(v.hex, 'hex')));
    const r = new LpFrameReader();
    const frames: LpFrame[] = [];
    for (const byte of all) frames.push(...r.push(Buffer.from([byte])));
    assert.equal(frames.length, file.vectors.length);
    assert.equal(new LpFrameReader().push(all).length, file.vectors.length);
  });

  it('refuses to encode an oversized frame, a bad address or an out-of-range number', () => {
    const big = 'x'.repeat(LP_MAX_FRAME);
    assert.throws(() => encodeRequest({ id: 1, kind: 'getaddrinfo', node: big, family: 0 }), LpProtocolError);
    const justFits = 'x'.repeat(LP_MAX_FRAME - 12 - 2 - 4);
    assert.equal(encodeRequest({ id: 1, kind: 'getaddrinfo', node: justFits, family: 0 }).length, LP_MAX_FRAME);
    assert.throws(() => encodeRequest({ id: 1, kind: 'getaddrinfo', node: justFits + 'x', family: 0 }), LpProtocolError);
    assert.throws(() => encodeRequest({ id: 1, kind: 'connect', proto: 'tcp', remote: { family: 4, address: '::1', port: 1 } }), LpProtocolError);
    assert.throws(() => encodeRequest({ id: 1, kind: 'connect', proto: 'tcp', remote: { family: 4, address: '1.2.3.4', port: 70000 } }), LpProtocolError);
    assert.throws(() => encodeResponse({ id: -1, kind: 'hello', status: 0 }), LpProtocolError);
  });

  it('a non-zero status sends `via` as zeros whatever the caller put there', () => {
    const b = encodeResponse({ id: 9, kind: 'connect', status: -111, via: { family: 6, address: '::1', port: 5 } });
    const back = decodeResponse(oneFrame(b.toString('hex')));
    assert.deepEqual(back, { id: 9, kind: 'connect', status: -111, via: { family: 4, address: '0.0.0.0', port: 0 } });
  });

  it('formats IPv6 text canonically (RFC 5952)', () => {
    for (const [input, want] of [
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
      ['fe80::1:2', 'fe80::1:2'],
    ] as const) {
      const b = encodeRequest({ id: 1, kind: 'connect', proto: 'tcp', remote: { family: 6, address: input, port: 1 } });
      const back = decodeRequest(oneFrame(b.toString('hex')));
      assert.equal(back.kind === 'connect' && back.remote.address, want);
    }
  });
});
