/**
 * The LP messages for remote files against the shared vectors (test/vectors/layer-protocol.json,
 * section `files`; the C codec re-encodes the same bytes in layer/tests/lp_vectors.c), plus
 * round trips of random messages.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  FS_MAX_IO,
  LpFrameReader,
  LpProtocolError,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type FsRequest,
  type FsResponse,
  type LpRequest,
  type LpResponse,
} from '../../common/protocol/layer/index.js';

interface Vector {
  name: string;
  direction: 'request' | 'response';
  message: Record<string, unknown>;
  hex: string;
}
const doc = JSON.parse(readFileSync(new URL('../vectors/layer-protocol.json', import.meta.url), 'utf8')) as { files: Vector[] };

/** JSON `{hex}` -> Buffer, as the vectors write binary fields. */
function revive(m: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) out[k] = v && typeof v === 'object' && 'hex' in v ? Buffer.from((v as { hex: string }).hex, 'hex') : v;
  return out;
}

describe('LP file messages: vectors', () => {
  assert.ok(doc.files.length >= 20);
  for (const v of doc.files) {
    it(`${v.direction}: ${v.name}`, () => {
      const bytes = Buffer.from(v.hex, 'hex');
      const [frame] = new LpFrameReader().push(bytes);
      const decoded = v.direction === 'request' ? decodeRequest(frame!) : decodeResponse(frame!);
      assert.deepEqual(decoded, revive(v.message));
      const encoded = v.direction === 'request' ? encodeRequest(decoded as LpRequest) : encodeResponse(decoded as LpResponse);
      assert.equal(encoded.toString('hex'), v.hex);
    });
  }
  it('rejects oversized data and truncated payloads', () => {
    assert.throws(() => encodeRequest({ id: 1, kind: 'write', handle: 1, offset: 0, data: Buffer.alloc(FS_MAX_IO + 1) }), LpProtocolError);
    const ok = Buffer.from(doc.files.find((v) => v.name === 'fs open ok with stat')!.hex, 'hex');
    const cut = Buffer.from(ok.subarray(0, ok.length - 1));
    cut.writeUInt32LE(cut.length - 4, 0);
    assert.throws(() => decodeResponse(new LpFrameReader().push(cut)[0]!), LpProtocolError);
  });
});

describe('LP file messages: round trips', () => {
  const path = fc.string({ maxLength: 200 }).map((s) => `/${s}`);
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const off = fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
  const req: fc.Arbitrary<FsRequest> = fc.oneof(
    fc.record({ id: u32, kind: fc.constant('open' as const), path, flags: u32, mode: u32 }),
    fc.record({ id: u32, kind: fc.constant('read' as const), handle: u32, offset: off, len: u32 }),
    fc.record({ id: u32, kind: fc.constant('write' as const), handle: u32, offset: off, data: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) }),
    fc.record({ id: u32, kind: fc.constant('rename' as const), path, path2: path }),
    fc.record({ id: u32, kind: fc.constant('stat' as const), path, flags: u32, handle: u32 }),
  );
  it('requests', () => fc.assert(fc.property(req, (r) => assert.deepEqual(decodeRequest(new LpFrameReader().push(encodeRequest(r))[0]!), { ...r }))));
  const resp: fc.Arbitrary<FsResponse> = fc.oneof(
    fc.record({
      id: u32,
      kind: fc.constant('getdents' as const),
      status: fc.integer({ min: -4095, max: 1 }),
      entries: fc.array(
        fc.record({ ino: fc.integer({ min: 0, max: 2 ** 53 - 1 }), type: fc.integer({ min: 0, max: 255 }), name: fc.string({ minLength: 1, maxLength: 100 }) }),
        { maxLength: 50 },
      ),
    }),
    fc.record({ id: u32, kind: fc.constant('readlink' as const), status: fc.integer({ min: -4095, max: 1 }), target: fc.string({ maxLength: 300 }) }),
  );
  it('responses', () =>
    fc.assert(
      fc.property(resp, (r) =>
        assert.deepEqual(JSON.parse(JSON.stringify(decodeResponse(new LpFrameReader().push(encodeResponse(r))[0]!))), JSON.parse(JSON.stringify(r))),
      ),
    ));
});
