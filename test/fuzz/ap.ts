/**
 * Fuzz properties for AP, the intproxy <-> agent codec (common/protocol/agent/): ApFrameReader, the
 * link's LinkFrameReader held to it, every `decode*` payload decoder on arbitrary frames, the params
 * checks on arbitrary JSON, and encode -> decode round trips of valid messages. Used by test/unit/fuzz-ap.test.ts (short) and
 * scripts/fuzz.sh (10^6 inputs each).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as ap from '../../common/protocol/agent/index.js';
import { AP_HEADER_SIZE, AP_MAX_PAYLOAD, ApFrameReader, ApKind, ApProtocolError, type ApFrame, type ApKindValue } from '../../common/protocol/agent/index.js';
import { LinkFrameReader, joinPieces } from '../../common/link/frame-reader.js';
import { cut, onlyThrows, type FuzzTarget } from './oracle.js';

/** Every payload decoder the module exports (decodeHello, decodeResponse, ... and any added later). */
export const AP_DECODERS: [string, (f: ApFrame) => unknown][] = Object.entries(ap)
  .filter(([name, v]) => /^decode/.test(name) && typeof v === 'function')
  .map(([name, v]) => [name, v as (f: ApFrame) => unknown]);

/** Every params check table (AP_PARAM_CHECKS and any per-family table added later). */
export const AP_CHECKS: [string, (p: unknown) => string | undefined][] = Object.entries(ap)
  .filter(([name, v]) => /PARAM_CHECKS$/.test(name) && typeof v === 'object' && v !== null)
  .flatMap(([table, v]) => Object.entries(v as Record<string, (p: unknown) => string | undefined>).map(([m, f]) => [`${table}.${m}`, f] as [string, typeof f]));

const KINDS = Object.values(ApKind) as number[];
const u32 = fc.nat({ max: 0xffffffff });

/** Values shaped like the protocol's fields, some right and some wrong. */
const arbFieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(1, 0, -1, 4, 6, 65535, 65536, 2 ** 32, 1.5, 'x', '', '127.0.0.1', '::1', null, true, false, [], {}),
  fc.string({ maxLength: 20 }),
  u32,
);
const FIELD_NAMES = [
  'version',
  'token',
  'client',
  'agent',
  'targetPid',
  'message',
  'method',
  'params',
  'ok',
  'result',
  'error',
  'code',
  'stream',
  'host',
  'port',
  'name',
  'family',
  'path',
  'mode',
  'flags',
  'offset',
  'len',
  'handle',
];
const arbNearValid = fc.dictionary(
  fc.constantFrom(...FIELD_NAMES),
  fc.oneof(arbFieldValue, fc.dictionary(fc.constantFrom(...FIELD_NAMES), arbFieldValue, { maxKeys: 4 })),
  { maxKeys: 6 },
);

const arbPayload = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc.json({ maxDepth: 3 }).map((s) => Buffer.from(s)),
  arbNearValid.map((v) => Buffer.from(JSON.stringify(v))),
  fc.constantFrom('', '{}', '[]', 'null', '{"ok":true}', '{"ok":false}', '{"error":null}', '{"__proto__":{"ok":true}}').map((s) => Buffer.from(s)),
  fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s)),
);
export const arbFrame: fc.Arbitrary<ApFrame> = fc.record({
  kind: fc.oneof(fc.constantFrom(...KINDS), fc.nat(255)).map((k) => k as ApKindValue),
  channel: u32,
  payload: arbPayload,
});

function frameBytes(f: ApFrame): Buffer {
  return Buffer.concat([ap.encodeHeader(f.kind, f.channel, f.payload.length), f.payload]);
}

function readOne(bytes: Buffer, points: number[] = []): ApFrame {
  const reader = new ApFrameReader();
  const frames = cut(bytes, points).flatMap((c) => reader.push(c));
  assert.equal(frames.length, 1);
  assert.equal(reader.pending, 0);
  return frames[0]!;
}

// ---- valid messages -------------------------------------------------------------------------

/** Generated objects may have a null prototype; what crosses the wire comes back as plain JSON. */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const json = fc.jsonValue({ maxDepth: 3 }).map(plain);
const str = fc.string({ unit: 'binary', maxLength: 40 });
const errorBody = fc.record({ code: str, message: str }).map((o) => ({ ...o }));

type RoundTrip = { encode: Buffer; check(f: ApFrame): void };
const arbRoundTrip: fc.Arbitrary<RoundTrip> = fc.oneof(
  fc
    .record({ version: u32, token: str, client: str })
    .map(plain)
    .map((h) => ({ encode: ap.encodeHello(h), check: (f: ApFrame) => assert.deepEqual(ap.decodeHello(f), h) })),
  fc
    .record({ version: u32, agent: str, targetPid: u32 })
    .map(plain)
    .map((h) => ({ encode: ap.encodeHelloOk(h), check: (f: ApFrame) => assert.deepEqual(ap.decodeHelloOk(f), h) })),
  str.map((m) => ({ encode: ap.encodeHelloErr(m), check: (f: ApFrame) => assert.deepEqual(ap.decodeHelloErr(f), { message: m }) })),
  fc.tuple(u32, str, json).map(([id, method, params]) => ({
    encode: ap.encodeRequest(id, method, params),
    check: (f: ApFrame) => {
      assert.equal(f.channel, id);
      assert.deepEqual(ap.decodeRequest(f), { method, params: params ?? {} });
    },
  })),
  fc
    .tuple(
      u32,
      fc.oneof(
        json.map((result) => ({ ok: true as const, result })),
        errorBody.map((error) => ({ ok: false as const, error })),
      ),
    )
    .map(([id, r]) => ({
      encode: ap.encodeResponse(id, r),
      check: (f: ApFrame) => {
        assert.equal(f.channel, id);
        assert.deepEqual(ap.decodeResponse(f), r);
      },
    })),
  // The binary form: a result whose `data` is a Buffer travels raw after the JSON.
  fc.tuple(u32, fc.nat(), fc.uint8Array({ maxLength: 2000 })).map(([id, n, b]) => ({
    encode: ap.encodeResponse(id, { ok: true, result: { n, data: Buffer.from(b) } }),
    check: (f: ApFrame) => {
      assert.equal(f.channel, id);
      assert.deepEqual(ap.decodeResponse(f), { ok: true, result: { n, data: Buffer.from(b) } });
    },
  })),
  fc.tuple(u32, fc.option(errorBody, { nil: undefined })).map(([s, error]) => ({
    encode: ap.encodeClose(s, error),
    check: (f: ApFrame) => assert.deepEqual(ap.decodeClose(f), error ? { error } : {}),
  })),
  fc.tuple(u32, u32).map(([s, n]) => ({ encode: ap.encodeCredit(s, n), check: (f: ApFrame) => assert.equal(ap.decodeCredit(f), n) })),
  fc
    .uint8Array({ minLength: 8, maxLength: 8 })
    .map((b) => ({ encode: ap.encodePing(Buffer.from(b)), check: (f: ApFrame) => assert.deepEqual(ap.decodePing(f), Buffer.from(b)) })),
  fc.tuple(u32, fc.uint8Array({ maxLength: 2000 })).map(([s, b]) => ({
    encode: ap.encodeData(s, Buffer.from(b)),
    check: (f: ApFrame) => assert.deepEqual({ ...f, payload: Buffer.from(f.payload) }, { kind: ApKind.DATA, channel: s, payload: Buffer.from(b) }),
  })),
  u32.map((s) => ({ encode: ap.encodeEof(s), check: (f: ApFrame) => assert.deepEqual(f, { kind: ApKind.EOF, channel: s, payload: Buffer.alloc(0) }) })),
);

// ---- properties -----------------------------------------------------------------------------

const prop = (name: string, p: () => fc.IProperty<never>): FuzzTarget => ({
  name,
  run: (numRuns, seed) => fc.assert(p(), { numRuns, seed, endOnFailure: true }),
});

export const apTargets: FuzzTarget[] = [
  ...AP_DECODERS.map(([name, decode]) =>
    prop(`AP ${name}: arbitrary frames`, () => fc.property(arbFrame, (f) => void onlyThrows(ApProtocolError, name, () => decode(f))) as never),
  ),
  prop(
    `AP params checks (${AP_CHECKS.length} methods): arbitrary JSON never throws`,
    () =>
      fc.property(fc.constantFrom(...AP_CHECKS), fc.oneof(arbNearValid, fc.jsonValue({ maxDepth: 3 })), ([name, check], params) => {
        const verdict = onlyThrows(class Never extends Error {}, name, () => check(params));
        assert.ok(verdict === undefined || typeof verdict === 'string');
      }) as never,
  ),
  prop(
    'ApFrameReader: arbitrary bytes in arbitrary chunks',
    () =>
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
          fc.array(arbFrame.map(frameBytes), { maxLength: 6 }).map((b) => Buffer.concat(b)),
        ),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(AP_MAX_PAYLOAD, 64, 0),
        (bytes, points, max) => {
          const whole = new ApFrameReader(max);
          let wholeFrames: ApFrame[] = [];
          const wholeOk = onlyThrows(ApProtocolError, 'ApFrameReader.push', () => ((wholeFrames = whole.push(bytes)), true)) ?? false;
          const reader = new ApFrameReader(max);
          const got: ApFrame[] = [];
          let ok = true;
          for (const c of cut(bytes, points)) {
            const r = onlyThrows(ApProtocolError, 'ApFrameReader.push', () => reader.push(c));
            if (r === undefined) {
              ok = false;
              break;
            }
            got.push(...r);
            // Never more than one incomplete frame is held, and never a frame larger than allowed.
            assert.ok(reader.pending < 4 + 5 + max, `reader holds ${reader.pending} bytes`);
          }
          assert.equal(ok, wholeOk);
          if (wholeOk) assert.deepEqual(got, wholeFrames);
          for (const f of got) assert.ok(f.payload.length <= max);
        },
      ) as never,
  ),
  prop(
    "LinkFrameReader (the link's zero-copy reader): the reference reader's frames and errors, in arbitrary chunks",
    () =>
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
          fc.array(arbFrame.map(frameBytes), { maxLength: 6 }).map((b) => Buffer.concat(b)),
        ),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(AP_MAX_PAYLOAD, 64, 0),
        (bytes, points, max) => {
          let want: ApFrame[] = [];
          const ref = new ApFrameReader(max);
          const wantOk = onlyThrows(ApProtocolError, 'ApFrameReader.push', () => ((want = ref.push(bytes)), true)) ?? false;
          const got: ApFrame[] = [];
          const reader = new LinkFrameReader(
            { frame: (f) => got.push(f), data: (channel, pieces, length) => got.push({ kind: ApKind.DATA, channel, payload: joinPieces(pieces, length) }) },
            max,
          );
          let ok = true;
          for (const c of cut(bytes, points)) {
            if (onlyThrows(ApProtocolError, 'LinkFrameReader.push', () => (reader.push(c), true)) === undefined) {
              ok = false;
              break;
            }
          }
          // The link's reader refuses an unknown kind at the header; the reference only once the frame is
          // complete. So it may refuse a trailing frame the reference still waits for, and nothing else.
          if (wantOk && !ok) assert.ok(ref.pending > 0, 'refused bytes the reference reader accepts');
          else assert.equal(ok, wantOk);
          if (wantOk) assert.deepEqual(got, want);
        },
      ) as never,
  ),
  prop(
    'ApFrameReader: a declared length over the maximum is refused at the header',
    () =>
      fc.property(fc.integer({ min: 5 + AP_MAX_PAYLOAD + 1, max: 0xffffffff }), fc.nat(3), (len, split) => {
        const r = new ApFrameReader();
        const head = Buffer.alloc(4);
        head.writeUInt32LE(len);
        r.push(head.subarray(0, split));
        assert.throws(() => r.push(head.subarray(split)), ApProtocolError);
      }) as never,
  ),
  prop(
    'AP encode -> ApFrameReader -> decode round trip',
    () =>
      fc.property(arbRoundTrip, fc.array(fc.nat(), { maxLength: 4 }), (rt, points) => {
        assert.ok(rt.encode.length >= AP_HEADER_SIZE);
        rt.check(readOne(rt.encode, points));
      }) as never,
  ),
];
