#!/usr/bin/env bash
# Builds the test cluster's binaries and images into $BUILD_DIR (see lib/common.sh), once per version
# set. Needs Go (>= 1.24) and the Go module proxy; every compile runs under `nice -n 19`.
# Output: $BIN/{mirrord-k8s, coredns, pause} and symlinks named after each Kubernetes component.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -f "$BUILD_DIR/.complete" ] && exit 0
command -v go >/dev/null || die "go is not on PATH (Go >= 1.24 is needed to build the test cluster)"
command -v gcc >/dev/null || die "gcc is needed for the pause binary"
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
[ -f "$BUILD_DIR/.complete" ] && exit 0

started=$SECONDS
say "building Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, CoreDNS $COREDNS_VERSION into $BUILD_DIR (first time only; about 10-15 minutes on 2 cores)"
rm -rf "$BUILD_DIR.tmp"
mkdir -p "$BUILD_DIR.tmp/bin" "$BUILD_DIR.tmp/src"
out="$BUILD_DIR.tmp/bin"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
LDF="-s -w"

# --- Kubernetes + etcd: one multi-call binary ---------------------------------------------------
k="$BUILD_DIR.tmp/src/k8s"
mkdir -p "$k"
cp "$CLUSTER_DIR"/src/k8s/*.go "$k/"
{
  echo "module mirrord.dev/test-cluster/k8s"
  echo
  echo "go 1.24.0"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo ")"
} >"$k/go.mod"
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with ./staging paths, which a
# dependent module does not inherit: point each one at its published version instead.
(cd "$k" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null)
kmod="$(cd "$k" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod")
[ -n "$staging" ] || die "found no staging modules in $kmod"
{
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m $K8S_STAGING_VERSION"; done
  echo ")"
} >>"$k/go.mod"
ver="$K8S_VERSION"; minor="${ver#v1.}"; minor="${minor%%.*}"
date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
vflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
say "go build mirrord-k8s (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, etcd)"
t=$SECONDS
(cd "$k" && nice -n 19 go build -trimpath -ldflags "$LDF$vflags" -o "$out/mirrord-k8s" .)
say "mirrord-k8s built in $((SECONDS - t)) s"
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  ln -sf mirrord-k8s "$out/$c"
done

# --- CoreDNS ----------------------------------------------------------------------------------------
d="$BUILD_DIR.tmp/src/coredns"
mkdir -p "$d"
cp "$CLUSTER_DIR/src/coredns/main.go" "$d/"
printf 'module mirrord.dev/test-cluster/coredns\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >"$d/go.mod"
say "go build coredns"
t=$SECONDS
(cd "$d" && nice -n 19 go build -trimpath -ldflags "$LDF -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$out/coredns" .)
say "coredns built in $((SECONDS - t)) s"

# --- pause ------------------------------------------------------------------------------------------
nice -n 19 gcc -Os -static -o "$out/pause" "$CLUSTER_DIR/src/pause/pause.c"
strip "$out/pause"

rm -rf "$BUILD_DIR"
mv "$BUILD_DIR.tmp" "$BUILD_DIR"
echo "$((SECONDS - started))" >"$BUILD_DIR/build-seconds"
touch "$BUILD_DIR/.complete"
say "build complete in $((SECONDS - started)) s"
