import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AP_MAX_PAYLOAD,
  AP_PARAM_CHECKS,
  ApFrameReader,
  ApKind,
  ApProtocolError,
  decodeClose,
  decodeCredit,
  decodeHello,
  decodeHelloErr,
  decodeHelloOk,
  decodePing,
  decodeRequest,
  decodeResponse,
  encodeClose,
  encodeCredit,
  encodeData,
  encodeEof,
  encodeFrame,
  encodeHello,
  encodeHelloErr,
  encodeHelloOk,
  encodePing,
  encodePong,
  encodeRequest,
  encodeResponse,
  parseApParams,
  type ApFrame,
} from '../../common/protocol/agent/index.js';
import { AP_VERSION } from '../../common/version.js';

const one = (buf: Buffer): ApFrame => {
  const frames = new ApFrameReader().push(buf);
  assert.equal(frames.length, 1);
  return frames[0]!;
};

test('header layout matches docs/protocol.md section 2', () => {
  const f = encodeFrame(ApKind.DATA, 0x01020304, Buffer.from('abc'));
  assert.deepEqual([...f], [8, 0, 0, 0, 8, 4, 3, 2, 1, 0x61, 0x62, 0x63]);
  assert.deepEqual([...encodeCredit(7, 65536)], [9, 0, 0, 0, 11, 7, 0, 0, 0, 0, 0, 1, 0]);
  assert.deepEqual([...encodeEof(3)], [5, 0, 0, 0, 9, 3, 0, 0, 0]);
});

test('every kind round-trips', () => {
  const hello = { version: AP_VERSION, token: 's3cret', client: 'mirrord/0.1.0' };
  assert.deepEqual(decodeHello(one(encodeHello(hello))), hello);
  const ok = { version: 1, agent: '0.1.0', targetPid: 42 };
  let f = one(encodeHelloOk(ok));
  assert.equal(f.kind, ApKind.HELLO_OK);
  assert.deepEqual(decodeHelloOk(f), ok);
  assert.deepEqual(decodeHelloErr(one(encodeHelloErr('wrong session token'))), { message: 'wrong session token' });
  const ping = Buffer.from('01234567');
  assert.deepEqual(decodePing(one(encodePing(ping))), ping);
  f = one(encodePong(ping));
  assert.equal(f.kind, ApKind.PONG);
  assert.deepEqual(f.payload, ping);
  f = one(encodeRequest(9, 'dns.lookup', { name: 'db', family: 0 }));
  assert.equal(f.kind, ApKind.REQUEST);
  assert.equal(f.channel, 9);
  assert.deepEqual(decodeRequest(f), { method: 'dns.lookup', params: { name: 'db', family: 0 } });
  f = one(encodeResponse(9, { ok: true, result: { env: { A: '1' } } }));
  assert.deepEqual(decodeResponse(f), { ok: true, result: { env: { A: '1' } } });
  f = one(encodeResponse(10, { ok: false, error: { code: 'ENOTFOUND', message: 'no' } }));
  assert.deepEqual(decodeResponse(f), { ok: false, error: { code: 'ENOTFOUND', message: 'no' } });
  const bytes = Buffer.from([0, 1, 2, 255]);
  f = one(encodeData(5, bytes));
  assert.equal(f.kind, ApKind.DATA);
  assert.deepEqual(f.payload, bytes);
  f = one(encodeEof(5));
  assert.equal(f.kind, ApKind.EOF);
  assert.equal(f.payload.length, 0);
  assert.deepEqual(decodeClose(one(encodeClose(5))), {});
  assert.deepEqual(decodeClose(one(encodeClose(5, { code: 'ECONNRESET', message: 'reset' }))), {
    error: { code: 'ECONNRESET', message: 'reset' },
  });
  assert.equal(decodeCredit(one(encodeCredit(5, 0xfffffff0))), 0xfffffff0);
});

test('byte-by-byte input yields the same frames', () => {
  const all = Buffer.concat([
    encodeHello({ version: 1, token: 't', client: 'c' }),
    encodeData(1, Buffer.alloc(3000, 7)),
    encodeEof(1),
    encodeCredit(1, 3000),
    encodeClose(1),
  ]);
  const r = new ApFrameReader();
  const frames: ApFrame[] = [];
  for (let i = 0; i < all.length; i++) frames.push(...r.push(all.subarray(i, i + 1)));
  assert.deepEqual(
    frames.map((f) => [f.kind, f.channel, f.payload.length]),
    [
      [ApKind.HELLO, 0, frames[0]!.payload.length],
      [ApKind.DATA, 1, 3000],
      [ApKind.EOF, 1, 0],
      [ApKind.CREDIT, 1, 4],
      [ApKind.CLOSE, 1, 2],
    ],
  );
  assert.ok(frames[1]!.payload.every((b) => b === 7));
  assert.equal(r.pending, 0);
});

test('frames split at random points and glued together', () => {
  const frames = Array.from({ length: 200 }, (_, i) => encodeData(i * 2 + 1, Buffer.alloc((i * 37) % 5000, i & 0xff)));
  const all = Buffer.concat(frames);
  const r = new ApFrameReader();
  const out: ApFrame[] = [];
  let off = 0;
  let seed = 1;
  while (off < all.length) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (seed % 9000);
    out.push(...r.push(all.subarray(off, off + n)));
    off += n;
  }
  assert.equal(out.length, 200);
  out.forEach((f, i) => {
    assert.equal(f.channel, i * 2 + 1);
    assert.equal(f.payload.length, (i * 37) % 5000);
    assert.ok(f.payload.every((b) => b === (i & 0xff)));
  });
});

test('malformed input throws ApProtocolError', () => {
  const oversize = Buffer.alloc(9);
  oversize.writeUInt32LE(5 + AP_MAX_PAYLOAD + 1, 0);
  oversize.writeUInt8(ApKind.DATA, 4);
  // Refused as soon as the length is known, before a megabyte is buffered.
  assert.throws(() => new ApFrameReader().push(oversize.subarray(0, 4)), ApProtocolError);

  const unknown = encodeEof(1);
  unknown.writeUInt8(99, 4);
  assert.throws(() => new ApFrameReader().push(unknown), /unknown frame kind 99/);
  unknown.writeUInt8(0, 4);
  assert.throws(() => new ApFrameReader().push(unknown), ApProtocolError);

  const short = Buffer.from([2, 0, 0, 0, 8, 0]);
  assert.throws(() => new ApFrameReader().push(short), /shorter than its header/);

  assert.throws(() => encodeData(1, Buffer.alloc(AP_MAX_PAYLOAD + 1)), ApProtocolError);
  assert.throws(() => encodePing(Buffer.alloc(4)), ApProtocolError);

  const notJson = encodeFrame(ApKind.REQUEST, 1, Buffer.from('{nope'));
  assert.throws(() => decodeRequest(one(notJson)), ApProtocolError);
  assert.throws(() => decodeRequest(one(encodeFrame(ApKind.REQUEST, 1, Buffer.from('[1]')))), ApProtocolError);
  assert.throws(() => decodeResponse(one(encodeFrame(ApKind.RESPONSE, 1, Buffer.from('{"ok":1}')))), ApProtocolError);
  assert.throws(() => decodeCredit(one(encodeFrame(ApKind.CREDIT, 1, Buffer.alloc(3)))), ApProtocolError);
  assert.throws(() => decodeHello(one(encodeFrame(ApKind.HELLO, 0, Buffer.from('{"version":1}')))), ApProtocolError);
});

test('a maximal frame is accepted', () => {
  const f = one(encodeData(1, Buffer.alloc(AP_MAX_PAYLOAD, 1)));
  assert.equal(f.payload.length, AP_MAX_PAYLOAD);
});

test('param checks accept good params and name the bad field', () => {
  assert.equal(AP_PARAM_CHECKS['outgoing.connect']({ stream: 1, host: '127.0.0.1', port: 80 }), undefined);
  assert.match(AP_PARAM_CHECKS['outgoing.connect']({ stream: 1, host: '127.0.0.1', port: 0 }) ?? '', /port/);
  assert.match(AP_PARAM_CHECKS['dns.lookup']({ name: 'x', family: 5 }) ?? '', /family/);
  assert.equal(AP_PARAM_CHECKS['env.get']({}), undefined);
  assert.match(AP_PARAM_CHECKS['env.get'](null) ?? '', /object/);
});

test('a RESPONSE with Buffer data carries the bytes raw after the JSON, and malformed binary forms are refused', () => {
  const bytes = Buffer.from([0, 1, 2, 0xff, 0x7b, 0x22]);
  const frame = encodeResponse(5, { ok: true, result: { data: bytes, eof: false } });
  // 9 header bytes + 5 + the JSON + the bytes themselves: no base64 growth.
  const f = one(frame);
  assert.equal(f.payload[0], 0);
  assert.ok(f.payload.subarray(f.payload.length - bytes.length).equals(bytes));
  const r = decodeResponse(f);
  assert.ok(r.ok);
  const result = r.result as { data: Buffer; eof: boolean; $bin?: string };
  assert.ok(Buffer.isBuffer(result.data) && result.data.equals(bytes));
  assert.equal(result.eof, false);
  assert.equal(result.$bin, undefined);
  // Results without a Buffer stay plain JSON.
  assert.equal(one(encodeResponse(6, { ok: true, result: { data: 'text' } })).payload[0], 0x7b);
  const bin = (payload: Buffer) => ({ kind: ApKind.RESPONSE, channel: 1, payload });
  assert.throws(() => decodeResponse(bin(Buffer.from([0, 1]))), ApProtocolError);
  assert.throws(() => decodeResponse(bin(Buffer.from([0, 200, 0, 0, 0, 0x7b, 0x7d]))), ApProtocolError);
  const head = Buffer.from('{"ok":true,"result":{}}');
  const noMarker = Buffer.concat([Buffer.from([0, head.length, 0, 0, 0]), head, Buffer.from('x')]);
  assert.throws(() => decodeResponse(bin(noMarker)), ApProtocolError);
});

test('params are parsed by the method schemas: each problem names its field, unknown keys are dropped', () => {
  assert.match(AP_PARAM_CHECKS['fs.open']({ path: 'relative', flags: 0, mode: 0 }) ?? '', /^path must be an absolute path/);
  assert.match(AP_PARAM_CHECKS['fs.rename']({ from: '/a', to: '/b\0' }) ?? '', /^to must be/);
  assert.match(AP_PARAM_CHECKS['fs.read']({ fd: 1, offset: 0, len: 1 << 30 }) ?? '', /^len must be an integer 0\.\.524288/);
  assert.match(AP_PARAM_CHECKS['fs.close']({ fd: 0 }) ?? '', /^fd must be a non-zero u32/);
  assert.match(AP_PARAM_CHECKS['incoming.subscribe']({ port: 80, mode: 'steal', httpFilter: { path: 1 } }) ?? '', /^httpFilter\.path/);
  assert.equal(AP_PARAM_CHECKS['fs.mounts']([]), 'params must be an object');
  const r = parseApParams('outgoing.connect', { stream: 1, host: '10.0.0.1', port: 80, extra: true });
  assert.deepEqual(r, { ok: true, params: { stream: 1, host: '10.0.0.1', port: 80 } });
});
