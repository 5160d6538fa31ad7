/**
 * Short fuzz run of the LP codec (common/protocol/layer/): every decoder on arbitrary frames, the
 * frame reader on arbitrary chunked bytes and huge declared lengths, encode -> decode round trips.
 * The long run (10^6 inputs each) is scripts/fuzz.sh; FUZZ_RUNS / FUZZ_SEED override here.
 */
import { describe, it } from 'node:test';
import { lpTargets } from '../fuzz/lp.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

describe(`LP codec fuzz (${RUNS} inputs each)`, () => {
  for (const t of lpTargets) it(t.name, () => t.run(RUNS, SEED));
});
