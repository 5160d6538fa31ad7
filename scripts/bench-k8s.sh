#!/usr/bin/env bash
# npm run bench:k8s: the Kubernetes session-start benchmark (bench/k8s.ts) against the cluster
# KUBECONFIG names, or the test cluster (test/cluster/up, stopped again afterwards unless
# MIRRORD_TEST_KEEP_CLUSTER=1). Ensures Docker and builds first. Figures: bench/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-docker.sh
npm run -s build
started=0
if [ -z "${KUBECONFIG:-}" ] || ! node --import tsx test/helpers/k8s.ts reachable; then
  line="$(test/cluster/up | tail -n 1)"
  export KUBECONFIG="${line#KUBECONFIG=}"
  started=1
fi
trap '[ "$started" = 0 ] || [ -n "${MIRRORD_TEST_KEEP_CLUSTER:-}" ] || test/cluster/down' EXIT
node --import tsx bench/k8s.ts
