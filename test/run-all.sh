#!/usr/bin/env bash
# The one test command (npm test): test/run-all.sh [unit|layer|e2e ...], default all three in order.
# Every tier runs even when an earlier one fails; the last line is "N passed, N failed".
# MIRRORD_TEST_SKIP_BUILD=1 skips `npm run build` (quick reruns when dist/ is current).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TIERS=(unit layer e2e)
tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=("${ALL_TIERS[@]}")
for t in "${tiers[@]}"; do
  case " ${ALL_TIERS[*]} " in *" $t "*) ;; *) echo "run-all: unknown tier '$t' (expected: ${ALL_TIERS[*]})" >&2; exit 64 ;; esac
done

export MIRRORD_TEST_RUN_ID="run-$(date +%s)-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/mirrord-tests.XXXXXX")"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
problems=()
# A step that is not a test (build, image preparation) counts as one failed test when it fails, so
# the summary can never read "0 failed" after a broken build.
step_failed() { failed=$((failed + 1)); problems+=("$1"); echo "run-all: FAILED: $1" >&2; }

bash scripts/ensure-docker.sh || { echo "run-all: the Docker engine is not available; nothing can run" >&2; echo "0 passed, 1 failed"; exit 1; }

if [ -n "${MIRRORD_TEST_SKIP_BUILD:-}" ]; then
  echo "run-all: MIRRORD_TEST_SKIP_BUILD is set: not running npm run build"
else
  echo "run-all: npm run build"
  npm run build || step_failed "npm run build"
fi

cleanup() { node --import tsx test/helpers/cleanup.ts || echo "run-all: warning: leftover test resources could not be removed" >&2; }
cleanup

run_tier() {
  local tier="$1" tap="$work/$1.tap" started=$SECONDS
  shopt -s nullglob
  local files=(test/"$tier"/*.test.ts)
  shopt -u nullglob
  if [ "${#files[@]}" -eq 0 ]; then
    step_failed "tier '$tier' has no test files (test/$tier/*.test.ts)"
    return
  fi
  if [ "$tier" = e2e ]; then
    echo "run-all: preparing images for e2e (agent, test tools)"
    if ! node --import tsx test/helpers/prepare-images.ts; then
      step_failed "image preparation for e2e (tier not run)"
      return
    fi
  fi
  echo "run-all: tier $tier (${#files[@]} files)"
  node --import tsx --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${files[@]}"
  local rc=$? p f
  p=$(sed -n 's/^# pass \([0-9]\+\)$/\1/p' "$tap" | tail -n 1)
  f=$(sed -n 's/^# fail \([0-9]\+\)$/\1/p' "$tap" | tail -n 1)
  if [ -z "$p" ] || [ -z "$f" ]; then
    step_failed "tier '$tier': the test runner ended without counts (exit $rc)"
    return
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$f" -eq 0 ] || problems+=("tier '$tier': $f failed")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then step_failed "tier '$tier': runner exited $rc with no failed test"; fi
  echo "run-all: tier $tier: $p passed, $f failed in $((SECONDS - started)) s"
}

for t in "${tiers[@]}"; do run_tier "$t"; done

cleanup
for p in "${problems[@]}"; do echo "run-all: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
