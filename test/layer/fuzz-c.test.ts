/**
 * Short libFuzzer run of the C LP codec (layer/src/lp_codec.c): builds the harnesses of
 * layer/fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and runs each one FUZZ_C_RUNS inputs
 * (default 20000) from the shared byte vectors. The long run (10^6 each) is scripts/fuzz.sh.
 * clang and libclang-rt-14-dev come from scripts/ensure-docker.sh.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, copyFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FUZZ_DIR = path.join(ROOT, 'layer/fuzz');
const OUT = path.join(ROOT, 'layer/build/fuzz');
const RUNS = Number(process.env.FUZZ_C_RUNS ?? 20_000);
const HARNESSES = ['fuzz_lp_decode', 'fuzz_lp_stream', 'fuzz_lp_roundtrip'];

describe(`C LP codec under libFuzzer (${RUNS} inputs per harness)`, { timeout: 300_000 }, () => {
  before(() => {
    execFileSync('nice', ['make', '-s', '-C', FUZZ_DIR, 'all'], { stdio: ['ignore', 'inherit', 'inherit'] });
  });

  for (const h of HARNESSES) {
    it(`${h}: no crash, leak, sanitizer report or timeout`, () => {
      // A fresh copy of the seeds: libFuzzer adds what it finds to its corpus directory.
      const corpus = mkdtempSync(path.join(os.tmpdir(), `mirrord-${h}-`));
      for (const f of readdirSync(path.join(OUT, 'seeds'))) if (f.endsWith('.bin')) copyFileSync(path.join(OUT, 'seeds', f), path.join(corpus, f));
      try {
        const r = spawnSync(
          'nice',
          [
            path.join(OUT, h),
            `-runs=${RUNS}`,
            `-max_len=${h.endsWith('roundtrip') ? 2048 : 65536}`,
            '-len_control=20',
            '-timeout=10',
            '-rss_limit_mb=512',
            '-print_final_stats=1',
            `-artifact_prefix=${OUT}/crash-${h}-`,
            corpus,
          ],
          { encoding: 'utf8', timeout: 240_000 },
        );
        const stats = /stat::number_of_executed_units:\s*(\d+)/.exec(r.stderr);
        assert.equal(r.status, 0, `${h} exited ${r.status ?? r.signal}:\n${r.stderr.split('\n').slice(-40).join('\n')}`);
        assert.ok(stats && Number(stats[1]) >= RUNS, `${h} ran ${stats?.[1] ?? '?'} inputs, expected ${RUNS}`);
      } finally {
        rmSync(corpus, { recursive: true, force: true });
      }
    });
  }
});
