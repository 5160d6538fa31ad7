# Shared by test/cluster/{up,down,load-image} and lib/build.sh. Sourced, not executed.
# shellcheck shell=bash disable=SC2034
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
. "$CLUSTER_DIR/versions.env"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/go/bin"

# Build cache (kept by `down`): one directory per version set, keyed by a hash of versions.env and src/.
CACHE_ROOT="${MIRRORD_TEST_CLUSTER_CACHE:-/var/cache/mirrord-test-cluster}"
build_key() {
  (cd "$CLUSTER_DIR" && find versions.env src -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12
}
BUILD_DIR="$CACHE_ROOT/$K8S_VERSION-$(build_key)"
BIN="$BUILD_DIR/bin"

# Runtime state (removed by `down`).
STATE="${MIRRORD_TEST_CLUSTER_STATE:-/var/lib/mirrord-test-cluster}"
RUN="${MIRRORD_TEST_CLUSTER_RUN:-/run/mirrord-test-cluster}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
CONTAINERD_ROOT="$STATE/containerd"
CONTAINERD_STATE="$RUN/containerd/state"
KUBELET_ROOT="$STATE/kubelet"
CNI_CONF_DIR="$STATE/cni/net.d"
CNI_BIN_DIR=/usr/lib/cni
# Where CNI's host-local IPAM keeps its leases (by default /var/lib/cni, shared with other users).
CNI_IPAM_DIR="$STATE/cni/ipam"
NODE_NAME="${MIRRORD_TEST_CLUSTER_NODE:-mirrord-test-node}"
# Order matters: `down` stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

say() { echo "test-cluster: $*" >&2; }
die() { echo "test-cluster: error: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it starts containerd, the kubelet and iptables rules)"; }

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

pidfile() { echo "$RUN/$1.pid"; }
running() {
  local f; f="$(pidfile "$1")"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}
