/**
 * Fuzz properties for LP, the layer <-> intproxy codec (common/protocol/layer/): the frame reader and
 * every `decode*` export on arbitrary bytes, and encode -> decode round trips of valid messages.
 * Used by test/unit/fuzz-lp.test.ts (short) and scripts/fuzz.sh (10^6 inputs each).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as lp from '../../common/protocol/layer/index.js';
import { LP_MAX_FRAME, LpFrameReader, LpProtocolError, type LpAddr, type LpFrame, type LpRequest, type LpResponse } from '../../common/protocol/layer/index.js';
import { cut, onlyThrows, type FuzzTarget } from './oracle.js';

const HEADER = 12;
const RESPONSE = 0x8000;

/** Every decoder the module exports (decodeRequest, decodeResponse, and any added later). */
export const LP_DECODERS: [string, (f: LpFrame) => unknown][] = Object.entries(lp)
  .filter(([name, v]) => /^decode/.test(name) && typeof v === 'function')
  .map(([name, v]) => [name, v as (f: LpFrame) => unknown]);

/** Types worth hitting: the ones the codec knows (requests and responses), and some it does not. */
const knownTypes = [1, 2, 3, 0x10, 0x11, 0x12, ...Array.from({ length: 16 }, (_, i) => 0x20 + i)];
const arbType = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...knownTypes).chain((t) => fc.constantFrom(t, t | RESPONSE)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);

const u16le = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};
const u32le = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

/** Payload pieces that look like the protocol's own fields, so decoders get past their first check. */
const arbField = fc.oneof(
  fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
  fc.constantFrom(4, 6, 0, 1, 2, 7, 255).map((f) => Buffer.from([f])),
  fc.integer({ min: 0, max: 0xffff }).map(u16le),
  fc.constantFrom(0, 1, 2, 10, 0xffffffff, 60 * 1024, 60 * 1024 + 1, 0x7fffffff).map(u32le),
  fc.string({ maxLength: 40 }).map((s) => Buffer.concat([u16le(Buffer.byteLength(s)), Buffer.from(s)])),
  fc.integer({ min: 0, max: 0xffff }).map((n) => Buffer.concat([u16le(n), Buffer.alloc(Math.min(n, 64), 0x61)])),
  fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }).map((v) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  }),
);
const arbPayload = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.array(arbField, { maxLength: 20 }).map((parts) => Buffer.concat(parts)),
);
function frameBytes(f: LpFrame): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt32LE(HEADER - 4 + f.payload.length, 0);
  h.writeUInt32LE(f.id, 4);
  h.writeUInt16LE(f.type, 8);
  return Buffer.concat([h, f.payload]);
}

// ---- valid messages -------------------------------------------------------------------------

const arbV4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
/** IPv6 in any spelling fast-check makes (compressed, embedded IPv4, upper case...). */
const arbV6 = fc.oneof(
  fc.ipV6(),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(':')),
);
const arbPort = fc.nat(0xffff);
export const arbAddr: fc.Arbitrary<LpAddr> = fc.oneof(
  fc.record({ family: fc.constant(4 as const), address: arbV4, port: arbPort }),
  fc.record({ family: fc.constant(6 as const), address: arbV6, port: arbPort }),
);
const id = fc.nat({ max: 0xffffffff });
const u32 = fc.nat({ max: 0xffffffff });
const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const status = fc.oneof(fc.constantFrom(0, 1, -2, -3, -111), i32);
/** Any Unicode text (no lone surrogates: they have no UTF-8 form). */
const text = (maxLength: number) => fc.string({ unit: 'binary', maxLength });

export const arbRequest: fc.Arbitrary<LpRequest> = fc.oneof(
  fc.record({ id, kind: fc.constant('hello' as const), version: fc.nat(0xffff), pid: u32, ppid: u32, parentPid: u32, exe: text(200) }),
  fc.record({ id, kind: fc.constant('connect' as const), proto: fc.constantFrom('tcp' as const, 'udp' as const), remote: arbAddr }),
  fc.record({
    id,
    kind: fc.constant('connect' as const),
    proto: fc.constantFrom('tcp' as const, 'udp' as const),
    remote: arbAddr,
    takeSocket: fc.constant(true),
  }),
  fc.record({ id, kind: fc.constant('getaddrinfo' as const), node: text(300), family: fc.constantFrom(0 as const, 2 as const, 10 as const) }),
  fc.record({ id, kind: fc.constant('listen' as const), requested: arbAddr, bound: arbAddr }),
  fc.record({ id, kind: fc.constant('accept' as const), peer: arbAddr }),
  fc.record({ id, kind: fc.constant('unlisten' as const), requested: arbAddr }),
  fc.record({ id, kind: fc.constant('connect_unix' as const), path: text(300) }),
) as fc.Arbitrary<LpRequest>;

export const arbResponse: fc.Arbitrary<LpResponse> = fc.oneof(
  fc.record({ id, kind: fc.constantFrom('hello' as const, 'listen' as const, 'unlisten' as const), status }),
  fc.record({ id, kind: fc.constant('connect' as const), status, via: arbAddr }),
  fc.record({ id, kind: fc.constant('accept' as const), status, remote: arbAddr }),
  fc.record({ id, kind: fc.constant('connect_unix' as const), status, via: text(200) }),
  fc.record({
    id,
    kind: fc.constant('getaddrinfo' as const),
    status,
    addresses: fc.array(
      arbAddr.map(({ family, address }) => ({ family, address })),
      { maxLength: 40 },
    ),
    canonname: text(200),
  }),
) as fc.Arbitrary<LpResponse>;

/** An independent spelling check: the WHATWG URL parser's canonical IPv6 text. */
function sameAddress(a: string, b: string): boolean {
  if (!a.includes(':')) return a === b;
  return new URL(`http://[${a}]/`).hostname === new URL(`http://[${b}]/`).hostname;
}

/** `got` must equal `want` up to IPv6 spelling; addresses are compared by canonical form. */
function assertSameMessage(got: unknown, want: unknown, path = '$'): void {
  if (typeof want === 'string' && typeof got === 'string' && want.includes(':') && /^[0-9a-fA-F:.]+$/.test(want)) {
    assert.ok(sameAddress(got, want), `${path}: ${got} is not the address ${want}`);
    return;
  }
  if (typeof want !== 'object' || want === null) {
    assert.equal(got, want, path);
    return;
  }
  assert.equal(typeof got, 'object', path);
  const g = got as Record<string, unknown>;
  const w = want as Record<string, unknown>;
  assert.deepEqual(Object.keys(g).sort(), Object.keys(w).sort(), path);
  for (const k of Object.keys(w)) assertSameMessage(g[k], w[k], `${path}.${k}`);
}

/** What a response looks like after the wire: a not-Ok connect/accept carries zeros. */
function expectedResponse(r: LpResponse): LpResponse {
  const zero: LpAddr = { family: 4, address: '0.0.0.0', port: 0 };
  // TakeSocket (2) carries the address the taken socket connects to.
  if (r.kind === 'connect' && r.status !== 0 && r.status !== 2) return { ...r, via: zero };
  if (r.kind === 'accept' && r.status !== 0) return { ...r, remote: zero };
  if (r.kind === 'connect_unix' && r.status !== 0) return { ...r, via: '' };
  return r;
}

function readOne(bytes: Buffer): LpFrame {
  const frames = new LpFrameReader().push(bytes);
  assert.equal(frames.length, 1);
  return frames[0]!;
}

/** A valid frame, then damaged: bytes overwritten, cut short or extended, type changed. */
const arbMutated: fc.Arbitrary<LpFrame> = fc
  .tuple(
    fc.oneof(
      arbRequest.map((m) => lp.encodeRequest(m)),
      arbResponse.map((m) => lp.encodeResponse(m)),
    ),
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
    fc.option(fc.nat(), { freq: 3 }),
    fc.option(fc.uint8Array({ minLength: 1, maxLength: 8 }), { freq: 4 }),
    fc.option(arbType, { freq: 4 }),
  )
  .map(([bytes, edits, cutAt, extra, type]) => {
    const f = readOne(bytes);
    const payload = Buffer.from(f.payload);
    for (const [at, v] of edits) if (payload.length) payload[at % payload.length] = v;
    let p = cutAt === null ? payload : payload.subarray(0, cutAt % (payload.length + 1));
    if (extra) p = Buffer.concat([p, Buffer.from(extra)]);
    return { id: f.id, type: type ?? f.type, payload: p };
  });

export const arbFrame: fc.Arbitrary<LpFrame> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ id: fc.nat({ max: 0xffffffff }), type: arbType, payload: arbPayload }) },
  { weight: 3, arbitrary: arbMutated },
);

// ---- properties -----------------------------------------------------------------------------

const prop = (name: string, p: () => fc.IProperty<never> | fc.IPropertyWithHooks<never>): FuzzTarget => ({
  name,
  run: (numRuns, seed) => fc.assert(p(), { numRuns, seed, endOnFailure: true }),
});

export const lpTargets: FuzzTarget[] = [
  ...LP_DECODERS.map(([name, decode]) =>
    prop(
      `LP ${name}: arbitrary frames`,
      () =>
        fc.property(arbFrame, (f) => {
          const out = onlyThrows(LpProtocolError, name, () => decode(f));
          // Anything a decoder accepts was read whole: the payload holds no unread bytes.
          if (out !== undefined) assert.equal(typeof out, 'object');
        }) as never,
    ),
  ),
  prop(
    'LP decodeRequest/decodeResponse: encode o decode is a fixed point after one step',
    () =>
      fc.property(arbFrame, (f) => {
        const isResp = (f.type & RESPONSE) !== 0;
        const decode = isResp ? lp.decodeResponse : lp.decodeRequest;
        const encode = (m: unknown) => (isResp ? lp.encodeResponse(m as LpResponse) : lp.encodeRequest(m as LpRequest));
        const first = onlyThrows(LpProtocolError, 'decode', () => decode(f));
        if (first === undefined || (first as { kind: string }).kind in lp.FS_TYPES) return;
        // The first encode may normalise (zeros for a refused connect's address, IPv4 padding);
        // from there on, encode and decode must agree exactly.
        const bytes = encode(first);
        const second = decode(readOne(bytes));
        assert.deepEqual(encode(second), bytes);
        assert.deepEqual(decode(readOne(encode(second))), second);
      }) as never,
  ),
  prop(
    'LpFrameReader: arbitrary bytes in arbitrary chunks',
    () =>
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
          fc.array(arbFrame.map(frameBytes), { maxLength: 6 }).map((b) => Buffer.concat(b)),
        ),
        fc.array(fc.nat(), { maxLength: 12 }),
        (bytes, points) => {
          // Whole: the reference answer.
          const whole = new LpFrameReader();
          let wholeFrames: LpFrame[] = [];
          const wholeOk = onlyThrows(LpProtocolError, 'LpFrameReader.push', () => ((wholeFrames = whole.push(bytes)), true)) ?? false;
          // Chunked: the same frames, the same verdict, and never more than one frame held back.
          const reader = new LpFrameReader();
          const got: LpFrame[] = [];
          let ok = true;
          for (const c of cut(bytes, points)) {
            const r = onlyThrows(LpProtocolError, 'LpFrameReader.push', () => reader.push(c));
            if (r === undefined) {
              ok = false;
              break;
            }
            got.push(...r);
            const held = (reader as unknown as { buf: Buffer }).buf.length;
            assert.ok(held < LP_MAX_FRAME, `reader holds ${held} bytes`);
          }
          assert.equal(ok, wholeOk);
          if (wholeOk) assert.deepEqual(got, wholeFrames);
          else assert.deepEqual(got, wholeFrames.length ? wholeFrames : got);
        },
      ) as never,
  ),
  prop(
    'LpFrameReader: a declared length over the maximum is refused at the header',
    () =>
      fc.property(fc.integer({ min: LP_MAX_FRAME - 3, max: 0xffffffff }), fc.nat(3), (len, split) => {
        const r = new LpFrameReader();
        const head = u32le(len);
        r.push(head.subarray(0, split));
        assert.throws(() => r.push(head.subarray(split)), LpProtocolError);
      }) as never,
  ),
  prop(
    'LP encodeRequest -> LpFrameReader -> decodeRequest round trip',
    () =>
      fc.property(arbRequest, fc.array(fc.nat(), { maxLength: 4 }), (m, points) => {
        const bytes = lp.encodeRequest(m);
        const reader = new LpFrameReader();
        const frames = cut(bytes, points).flatMap((c) => reader.push(c));
        assert.equal(frames.length, 1);
        assertSameMessage(lp.decodeRequest(frames[0]!), m);
      }) as never,
  ),
  prop(
    'LP encodeResponse -> LpFrameReader -> decodeResponse round trip',
    () =>
      fc.property(arbResponse, fc.array(fc.nat(), { maxLength: 4 }), (m, points) => {
        const bytes = lp.encodeResponse(m);
        const reader = new LpFrameReader();
        const frames = cut(bytes, points).flatMap((c) => reader.push(c));
        assert.equal(frames.length, 1);
        assertSameMessage(lp.decodeResponse(frames[0]!), expectedResponse(m));
      }) as never,
  ),
];
