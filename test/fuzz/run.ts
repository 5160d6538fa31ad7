/**
 * The long TS fuzz run (scripts/fuzz.sh): every LP and AP property, FUZZ_RUNS inputs each (default
 * 10^6), one line per property with its count and rate. Exits non-zero on the first failure, after
 * printing fast-check's counterexample and the seed to replay it (FUZZ_SEED).
 */
import { apTargets } from './ap.js';
import { lpTargets } from './lp.js';

const runs = Number(process.env.FUZZ_RUNS ?? 1_000_000);
const seed = process.env.FUZZ_SEED === undefined ? Date.now() ^ (process.pid << 8) : Number(process.env.FUZZ_SEED);
const only = process.env.FUZZ_ONLY ? new RegExp(process.env.FUZZ_ONLY) : undefined;
const targets = [...lpTargets, ...apTargets].filter((t) => !only || only.test(t.name));

process.stdout.write(`fuzz: TS: ${targets.length} properties, ${runs} inputs each, seed ${seed}\n`);
let total = 0;
const started = performance.now();
for (const t of targets) {
  const t0 = performance.now();
  try {
    t.run(runs, seed);
  } catch (err) {
    process.stdout.write(`fuzz: TS ${t.name}: FAILED (replay: FUZZ_SEED=${seed} FUZZ_ONLY='${t.name}')\n${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const ms = performance.now() - t0;
  total += runs;
  process.stdout.write(`fuzz: TS ${t.name}: ${runs} inputs in ${(ms / 1000).toFixed(1)} s (${Math.round((runs * 1000) / ms)} inputs/s)\n`);
}
process.stdout.write(`fuzz: TS: ${total} inputs in ${((performance.now() - started) / 1000).toFixed(0)} s, no failure\n`);
