#!/usr/bin/env bash
# The one test command (npm test): test/run-all.sh [lint|unit|layer|e2e|k8s ...], default all in order,
# after npm run build. Tiers and variables: CONTRIBUTING.md. Only e2e and k8s need the Docker engine
# (scripts/ensure-docker.sh installs and starts it; root): unit, layer and lint need neither root nor Docker.
# The layer tier runs twice: as built, then against the ASan+UBSan build (layer-asan, make -C layer asan).
# Every tier runs even when an earlier one fails; the last line is "N passed, N failed".
# MIRRORD_TEST_SKIP_BUILD=1 skips `npm run build` (quick reruns when dist/ is current);
# MIRRORD_TEST_TIER_TIMEOUT (seconds, default 2400) bounds each tier; a test file without its own
# timeout gets 600 s (--test-timeout).
# k8s tier: uses the cluster KUBECONFIG names when it answers (images then loaded with the command in
# MIRRORD_K8S_LOAD_IMAGE, e.g. "kind load docker-image", else assumed present); otherwise starts
# test/cluster/up (first time: an 8-11 min build, cached in /var/cache/mirrord-test-cluster) and
# stops it with test/cluster/down after the tier unless MIRRORD_TEST_KEEP_CLUSTER=1.
# See docs/test-cluster.md.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TIERS=(lint unit layer e2e k8s)
tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=("${ALL_TIERS[@]}")
for t in "${tiers[@]}"; do
  case " ${ALL_TIERS[*]} " in *" $t "*) ;; *) echo "run-all: unknown tier '$t' (expected: ${ALL_TIERS[*]})" >&2; exit 64 ;; esac
done

TIER_TIMEOUT="${MIRRORD_TEST_TIER_TIMEOUT:-2400}"

# run-PID-EPOCH: test/helpers/cleanup.ts --stale keeps the resources of runs whose PID is alive.
export MIRRORD_TEST_RUN_ID="run-$$-$(date +%s)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mirrord-tests.XXXXXX")"
cluster_started=0
stop_cluster() {
  if [ "$cluster_started" = 1 ]; then
    cluster_started=0
    if [ -n "${MIRRORD_TEST_KEEP_CLUSTER:-}" ]; then
      echo "run-all: MIRRORD_TEST_KEEP_CLUSTER is set: the test cluster stays up (KUBECONFIG=$KUBECONFIG; test/cluster/down stops it)"
    else
      echo "run-all: test/cluster/down"
      test/cluster/down || echo "run-all: warning: test/cluster/down failed" >&2
    fi
  fi
}
trap 'stop_cluster; rm -rf "$work"' EXIT

passed=0
failed=0
problems=()
# A step that is not a test (build, image preparation) counts as one failed test when it fails, so
# the summary can never read "0 failed" after a broken build.
step_failed() { failed=$((failed + 1)); problems+=("$1"); echo "run-all: FAILED: $1" >&2; }

needs_docker=0
for t in "${tiers[@]}"; do [ "$t" != e2e ] && [ "$t" != k8s ] || needs_docker=1; done
if [ "$needs_docker" = 1 ]; then
  bash scripts/ensure-docker.sh || { echo "run-all: the Docker engine is not available; the e2e and k8s tiers cannot run" >&2; echo "0 passed, 1 failed"; exit 1; }
fi

if [ -n "${MIRRORD_TEST_SKIP_BUILD:-}" ]; then
  echo "run-all: MIRRORD_TEST_SKIP_BUILD is set: not running npm run build"
else
  echo "run-all: npm run build"
  npm run build || step_failed "npm run build"
fi

cleanup() { [ "$needs_docker" = 0 ] || node --import tsx test/helpers/cleanup.ts "$@" || echo "run-all: warning: test resources could not be removed" >&2; }
cleanup --stale

# The k8s tier's cluster and images. Returns 1 (after counting a failed step) when the tier cannot run.
prepare_k8s() {
  if [ -n "${KUBECONFIG:-}" ] && node --import tsx test/helpers/k8s.ts reachable; then
    echo "run-all: k8s: using the cluster KUBECONFIG names ($KUBECONFIG)"
  else
    [ -z "${KUBECONFIG:-}" ] || echo "run-all: k8s: KUBECONFIG=$KUBECONFIG does not answer; starting the test cluster instead"
    echo "run-all: test/cluster/up"
    local up_out
    cluster_started=1
    # The lock serialises this with any other test/cluster/up on the machine (two at once tear
    # each other's half-made cluster down); the daemons do not inherit it.
    if ! up_out="$(flock /tmp/mirrord-k8s.lock test/cluster/up)"; then
      step_failed "test/cluster/up (tier k8s not run)"
      return 1
    fi
    local line="${up_out##*$'\n'}"
    [[ "$line" == KUBECONFIG=* ]] || { step_failed "test/cluster/up printed no KUBECONFIG line (tier k8s not run)"; return 1; }
    export KUBECONFIG="${line#KUBECONFIG=}"
  fi
  echo "run-all: preparing images for k8s"
  local images
  if ! images="$(node --import tsx test/helpers/k8s.ts images)"; then
    step_failed "image preparation for k8s (tier not run)"
    return 1
  fi
  # shellcheck disable=SC2086 # one image name a line
  if [ "$cluster_started" = 1 ] || [[ "$KUBECONFIG" == "${MIRRORD_TEST_CLUSTER_STATE:-/var/lib/mirrord-test-cluster}"/* ]]; then
    test/cluster/load-image $images || { step_failed "loading images into the test cluster (tier k8s not run)"; return 1; }
  elif [ -n "${MIRRORD_K8S_LOAD_IMAGE:-}" ]; then
    sh -c "$MIRRORD_K8S_LOAD_IMAGE \"\$@\"" load-image $images || { step_failed "MIRRORD_K8S_LOAD_IMAGE failed (tier k8s not run)"; return 1; }
  else
    echo "run-all: k8s: MIRRORD_K8S_LOAD_IMAGE is not set: assuming the cluster already has" $images
  fi
  export MIRRORD_K8S_IMAGES_LOADED=1
}

# The fast path's fallback (docs/fast-path.md): every e2e file in which a program's traffic took the
# fast path (common/data-path-record.ts writes one record per such file into FAST_PATH_DIR) runs a
# second time on the stream (MIRRORD_AGENT_FD_PASSING=off, label e2e-stream). A tier in which no file
# took the fast path counts as a failure: the fast path itself is broken. MIRRORD_TEST_E2E_STREAM_FILES
# (a list of paths) replaces the recorded list; set it empty to skip that pass.
FAST_PATH_DIR="$work/fast-path-files"
e2e_stream_files() {
  if [ -n "${MIRRORD_TEST_E2E_STREAM_FILES+set}" ]; then
    echo "$MIRRORD_TEST_E2E_STREAM_FILES"
    return
  fi
  shopt -s nullglob
  local records=("$FAST_PATH_DIR"/*)
  shopt -u nullglob
  [ "${#records[@]}" -gt 0 ] || return 1
  # fast-path.test.ts runs each of its cases on both paths itself, and asserts the fast one.
  cat "${records[@]}" | sed "s|^$PWD/||" | grep -vx 'test/e2e/fast-path.test.ts' | sort -u | tr '\n' ' '
}

# run_tier TIER [LABEL VAR=VALUE...]: the tier's files, with those variables set, reported as LABEL.
# TIER_FILES (a list of paths), when set, replaces the tier's own files.
run_tier() {
  local tier="$1" label="${2:-$1}" summary="$work/${2:-$1}.spec" started=$SECONDS
  local tier_env=("${@:3}")
  shopt -s nullglob
  local files=(test/"$tier"/*.test.ts)
  shopt -u nullglob
  # shellcheck disable=SC2206 # a list of paths without spaces
  [ -z "${TIER_FILES:-}" ] || files=($TIER_FILES)
  if [ "${#files[@]}" -eq 0 ]; then
    step_failed "tier '$tier' has no test files (test/$tier/*.test.ts)"
    return
  fi
  if [ "$tier" = e2e ] && [ "$label" = e2e ]; then
    # Docker Compose v2 for the compose tests (built once from the Go module proxy, then cached); a failure is counted, the tier still runs.
    bash scripts/ensure-compose.sh || step_failed "scripts/ensure-compose.sh (docker compose for e2e)"
    echo "run-all: preparing images for e2e (agent, test tools)"
    if ! node --import tsx test/helpers/prepare-images.ts; then
      step_failed "image preparation for e2e (tier not run)"
      return
    fi
  fi
  if [ "$tier" = k8s ]; then
    prepare_k8s || return
  fi
  # e2e: every test file's processes know its path (common/data-path-record.ts). Not for the other
  # tiers: a second --import breaks worker threads started in the test's own process (the jq engine).
  local file_env=()
  [ "$tier" != e2e ] || file_env=(--import "$PWD/test/helpers/test-file-env.ts")
  echo "run-all: tier $label (${#files[@]} files)"
  # --test-timeout: a default for tests that set none, each test file included (the Kubernetes
  # targets file runs about 150 s here; 600 s leaves room for slower machines). `timeout`: a file that leaks a handle keeps its
  # process alive after its tests end, and must not hold CI (--foreground lets Ctrl-C reach the tests).
  # Not --test-force-exit: it ends a file as soon as the tests known so far are done, and silently
  # drops tests a file registers later (seen with the LP codec's vector-driven tests).
  timeout --foreground "$TIER_TIMEOUT" \
    env "${tier_env[@]}" node --import tsx "${file_env[@]}" --test --test-concurrency=1 --test-timeout=600000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=spec --test-reporter-destination="$summary" \
    "${files[@]}"
  local rc=$? p f c
  p=$(sed -n 's/^ℹ pass \([0-9]\+\)$/\1/p' "$summary" | tail -n 1)
  f=$(sed -n 's/^ℹ fail \([0-9]\+\)$/\1/p' "$summary" | tail -n 1)
  c=$(sed -n 's/^ℹ cancelled \([0-9]\+\)$/\1/p' "$summary" | tail -n 1)
  if [ -z "$p" ] || [ -z "$f" ]; then
    [ "$rc" -ne 124 ] || echo "run-all: tier $label exceeded ${TIER_TIMEOUT} s and was stopped" >&2
    step_failed "tier '$label': the test runner ended without counts (exit $rc)"
    return
  fi
  # A cancelled test (its file timed out or died) never got to pass: count it as failed.
  f=$((f + ${c:-0}))
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$f" -eq 0 ] || problems+=("tier '$label': $f failed")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then step_failed "tier '$label': runner exited $rc with no failed test"; fi
  echo "run-all: tier $label: $p passed, $f failed in $((SECONDS - started)) s"
}

for t in "${tiers[@]}"; do
  if [ "$t" = lint ]; then
    # Counted as one test: eslint (layering, type-aware rules), tsc, prettier, clang-format.
    echo "run-all: lint (npm run lint)"
    if npm run -s lint; then passed=$((passed + 1)); else step_failed "npm run lint"; fi
    continue
  fi
  if [ "$t" = e2e ]; then run_tier e2e e2e "MIRRORD_TEST_DATA_PATH_DIR=$FAST_PATH_DIR"; else run_tier "$t"; fi
  # Every layer test again with the sanitizer build of the .so and of the C test programs: a
  # report fails the case (test/layer/harness.ts).
  [ "$t" != layer ] || run_tier layer layer-asan MIRRORD_LAYER_TEST_ASAN=1
  # The fast path's fallback: the data-path files again on the stream.
  if [ "$t" = e2e ]; then
    if ! stream_files="$(e2e_stream_files)"; then
      step_failed "tier 'e2e-stream': no e2e file took the fast path (expected: exec, matrix, fast-path...); see docs/fast-path.md"
    elif [ -n "${stream_files// /}" ]; then
      TIER_FILES="$stream_files" run_tier e2e e2e-stream MIRRORD_AGENT_FD_PASSING=off
    fi
  fi
  [ "$t" != k8s ] || stop_cluster
done

cleanup --run "$MIRRORD_TEST_RUN_ID"
for p in "${problems[@]}"; do echo "run-all: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
