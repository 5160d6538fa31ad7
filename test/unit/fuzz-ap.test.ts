/**
 * Short fuzz run of the AP codec (common/protocol/agent/): ApFrameReader, every payload decoder and
 * params check on arbitrary input, encode -> decode round trips. The long run is scripts/fuzz.sh.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AP_MAX_PAYLOAD, ApFrameReader, ApKind, encodeFrame } from '../../common/protocol/agent/index.js';
import { apTargets } from '../fuzz/ap.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

describe(`AP codec fuzz (${RUNS} inputs each)`, () => {
  for (const t of apTargets) it(t.name, () => t.run(RUNS, SEED));
});

/**
 * A peer that sends a large frame in tiny pieces: the reader must give back exactly that frame and
 * hold nothing afterwards. (How fast it does so is a benchmark's business, not a test's; the
 * quadratic cost the fuzzer once found made this case take minutes, which the suite's timeout
 * would catch.)
 */
function readChunked(payloadBytes: number, chunk: number): void {
  const frame = encodeFrame(ApKind.DATA, 1, Buffer.alloc(payloadBytes, 7));
  const reader = new ApFrameReader();
  const got = [];
  for (let at = 0; at < frame.length; at += chunk) got.push(...reader.push(frame.subarray(at, at + chunk)));
  assert.equal(got.length, 1);
  assert.equal(got[0]!.payload.length, payloadBytes);
  assert.ok(got[0]!.payload.every((b) => b === 7));
  assert.equal(reader.pending, 0);
}

describe('ApFrameReader with a frame delivered in small chunks', () => {
  it('a 1 MiB frame in 4 KiB chunks', () => readChunked(AP_MAX_PAYLOAD, 4096));
  it('a 256 KiB frame in 1-byte chunks', () => readChunked(256 * 1024, 1));
});
