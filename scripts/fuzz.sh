#!/usr/bin/env bash
# The long fuzz run (npm run fuzz): every decoder of both protocols, FUZZ_RUNS inputs each
# (default 10^6). C: libFuzzer harnesses of layer/src/lp_codec.c built with ASan + UBSan
# (layer/fuzz/). TS: fast-check properties of the TypeScript LP and AP codecs (test/fuzz/run.ts;
# FUZZ_SEED replays a run, FUZZ_ONLY=REGEX picks properties). About 7 minutes at the default.
# Prints one line per decoder with its count and rate; exits non-zero on the first failure.
# The short pass that npm test runs: test/unit/fuzz-*.test.ts, test/layer/fuzz-c.test.ts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS="${FUZZ_RUNS:-1000000}"
export FUZZ_RUNS="$RUNS"

command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang libclang-rt-14-dev, or run scripts/ensure-docker.sh)" >&2; exit 1; }
started=$SECONDS
echo "fuzz: C: building layer/fuzz harnesses"
nice make -s -C layer/fuzz run RUNS="$RUNS"
nice node --import tsx test/fuzz/run.ts
echo "fuzz: all decoders clean, ${RUNS} inputs each, in $((SECONDS - started)) s"
