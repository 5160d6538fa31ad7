#!/usr/bin/env bash
# Make `docker compose` (Docker Compose v2, the Docker CLI plugin) available: `mirrord up` drives it and
# test/e2e/compose-tooling.test.ts checks it. Debian ships only Compose v1, so when the docker CLI does
# not already answer `docker compose version` with >= $MIN_COMPOSE, this builds the plugin from the Go
# module github.com/docker/compose/v2 (package ./cmd) at the version pinned in test/compose/versions.env,
# caches it under $MIRRORD_COMPOSE_CACHE (default /var/cache/mirrord-compose/<version>-go<go version>/)
# and installs it as a CLI plugin: /usr/local/lib/docker/cli-plugins/docker-compose for root (any docker
# CLI looks there), else ${DOCKER_CONFIG:-~/.docker}/cli-plugins. MIRRORD_COMPOSE_PLUGIN_DIR overrides.
# Idempotent: one line when there is nothing to do. Needs Go and the Go module proxy only for the first build.
# The cold build takes 2-5 minutes on 2 cores (under `nice -n 19`; 133-301 s measured, by how warm the Go caches are).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../test/compose/versions.env
. "$ROOT/test/compose/versions.env"
export PATH="$PATH:/usr/local/go/bin"

say() { echo "ensure-compose: $*" >&2; }
die() { echo "ensure-compose: error: $*" >&2; exit 1; }

# version_ge A B: A >= B for dotted numeric versions (a leading v and any -suffix are ignored).
version_ge() {
  local a="${1#v}" b="${2#v}"
  a="${a%%[-+]*}"; b="${b%%[-+]*}"
  [ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" = "$b" ]
}
# The version `docker compose` answers, or nothing (not installed, or the CLI has no such plugin).
compose_version() {
  local v
  v="$(timeout 20 docker compose version --short 2>/dev/null)" || return 0
  v="${v#v}"
  [[ "$v" =~ ^[0-9]+\.[0-9]+ ]] && echo "$v"
  return 0
}

command -v docker >/dev/null || die "the docker CLI is not on PATH (run scripts/ensure-docker.sh first)"
have="$(compose_version)"
if [ -n "$have" ] && version_ge "$have" "$MIN_COMPOSE"; then
  say "docker compose $have is installed (>= $MIN_COMPOSE): nothing to do"
  exit 0
fi

if [ -n "${MIRRORD_COMPOSE_PLUGIN_DIR:-}" ]; then
  PLUGIN_DIR="$MIRRORD_COMPOSE_PLUGIN_DIR"
elif [ "$(id -u)" = 0 ]; then
  PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
else
  PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi

command -v go >/dev/null || die "Go is not on PATH: it is needed to build Docker Compose $COMPOSE_VERSION (docker compose ${have:-is missing}${have:+ is older than $MIN_COMPOSE}); install Go >= $COMPOSE_GO_MIN"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
go_version="$(go env GOVERSION)"
version_ge "${go_version#go}" "$COMPOSE_GO_MIN" || die "Go $go_version is too old to build Docker Compose $COMPOSE_VERSION (it needs Go >= $COMPOSE_GO_MIN)"

CACHE_ROOT="${MIRRORD_COMPOSE_CACHE:-/var/cache/mirrord-compose}"
BUILD_DIR="$CACHE_ROOT/$COMPOSE_VERSION-$go_version"
BIN="$BUILD_DIR/docker-compose"

if [ ! -f "$BUILD_DIR/.complete" ]; then
  mkdir -p "$CACHE_ROOT" || die "cannot create the cache $CACHE_ROOT (set MIRRORD_COMPOSE_CACHE to a writable directory)"
  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9
fi
if [ ! -f "$BUILD_DIR/.complete" ]; then
  started=$SECONDS
  # Build inside the module's own source tree (the read-only copy in the module cache), so its own
  # go.mod, go.sum and exclude directives decide every dependency version: a wrapper module would not
  # inherit the excludes, and `go install pkg@version` refuses a module that has them.
  if ! info="$(go mod download -json "$COMPOSE_MODULE@$COMPOSE_VERSION" 2>&1)"; then
    err="$(printf '%s\n' "$info" | sed -n 's/^\t"Error": "\(.*\)",\{0,1\}$/\1/p' | head -n1 | sed 's/\\"/"/g')"
    die "cannot download $COMPOSE_MODULE@$COMPOSE_VERSION from the Go module proxy ($(go env GOPROXY)): ${err:-$(printf '%s' "$info" | tail -n1)}"
  fi
  src="$(printf '%s\n' "$info" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [ -d "$src/cmd" ] || die "no cmd/ package in $src (has the module layout changed?)"
  say "building Docker Compose $COMPOSE_VERSION with $go_version into $BUILD_DIR (first time only; 2-5 minutes on 2 cores)"
  rm -rf "$BUILD_DIR.tmp"
  mkdir -p "$BUILD_DIR.tmp"
  log="$BUILD_DIR.tmp/build.log"
  ticker=""
  if [ -t 2 ]; then
    (while sleep 5; do printf '\rensure-compose: fetching and compiling ... %d s' $((SECONDS - started)) >&2; done) &
    ticker=$!
    trap 'kill "$ticker" 2>/dev/null || true' EXIT
  fi
  # Dependencies first, so that a proxy that does not serve them is told apart from a failed compile.
  if ! (cd "$src" && go list -deps ./cmd >/dev/null) >"$log" 2>&1; then
    die "could not fetch the dependencies of Docker Compose $COMPOSE_VERSION from the Go module proxy ($(go env GOPROXY)): $(grep -v -m1 '^go: downloading' "$log")"
  fi
  rc=0
  (cd "$src" && nice -n 19 go build -trimpath \
    -ldflags "-s -w -X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" \
    -o "$BUILD_DIR.tmp/docker-compose" ./cmd) >>"$log" 2>&1 || rc=$?
  if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true; trap - EXIT; echo >&2; fi
  if [ "$rc" != 0 ]; then
    die "go build of Docker Compose $COMPOSE_VERSION failed (exit $rc); last lines of $log: $(tail -n 3 "$log" | tr '\n' ' ')"
  fi
  "$BUILD_DIR.tmp/docker-compose" version >/dev/null 2>&1 || die "the built docker-compose does not run ($BUILD_DIR.tmp/docker-compose version)"
  echo "$((SECONDS - started))" >"$BUILD_DIR.tmp/build-seconds"
  rm -rf "$BUILD_DIR"
  mv "$BUILD_DIR.tmp" "$BUILD_DIR"
  touch "$BUILD_DIR/.complete"
  say "built in $((SECONDS - started)) s ($(du -h "$BIN" | cut -f1))"
fi

mkdir -p "$PLUGIN_DIR" || die "cannot create the Docker CLI plugin directory $PLUGIN_DIR"
install -m 0755 "$BIN" "$PLUGIN_DIR/.docker-compose.$$" && mv -f "$PLUGIN_DIR/.docker-compose.$$" "$PLUGIN_DIR/docker-compose" \
  || die "cannot install the plugin into $PLUGIN_DIR"
now="$(compose_version)"
[ -n "$now" ] || die "installed $PLUGIN_DIR/docker-compose but \`docker compose version\` still fails ($(command -v docker) does not look in $PLUGIN_DIR; set MIRRORD_COMPOSE_PLUGIN_DIR)"
version_ge "$now" "$MIN_COMPOSE" || die "installed $PLUGIN_DIR/docker-compose, but \`docker compose\` answers $now (< $MIN_COMPOSE): another plugin directory wins"
say "docker compose $now installed as $PLUGIN_DIR/docker-compose"
