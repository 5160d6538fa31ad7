#!/usr/bin/env bash
# Make this machine ready for the test suite, the demo and the benchmarks: a running Docker engine
# and the host tools they call. Idempotent and quiet when there is nothing to do; one line per action otherwise.
# Meant for root on Debian (CI and dev machines of this project); elsewhere it only checks.
set -euo pipefail

# debootstrap, iptables and ip live in sbin, which a non-login shell may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

DOCKERD_LOG=/var/log/mirrord-dockerd.log
apt_updated=0

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: error: $*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* here (no apt-get); install it by hand"
  [ "$(id -u)" = 0 ] || die "cannot install $* (not root); install it by hand or run as root"
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  say "installing $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# command -> Debian package that provides it
declare -A TOOLS=(
  [debootstrap]=debootstrap
  [redis-cli]=redis-tools
  [curl]=curl
  [iptables]=iptables
  [ip]=iproute2
  [make]=make
  [gcc]=gcc
  [clang]=clang
)

missing=()
for cmd in "${!TOOLS[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${TOOLS[$cmd]}")
done
# libc headers come with gcc on Debian only through recommends; the layer build needs them.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# libFuzzer and the sanitizer runtimes for clang (test/layer/fuzz-c.test.ts, scripts/fuzz.sh).
compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a' >/dev/null || missing+=(libclang-rt-14-dev)
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  missing+=(docker.io)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if ! docker_ok; then
  if [ -n "${DOCKER_HOST:-}" ] && [[ "$DOCKER_HOST" != unix://* ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer 'docker info'; start that engine, or unset DOCKER_HOST to use a local one"
  fi
  [ "$(id -u)" = 0 ] || die "the Docker engine is not running and only root can start it here (dockerd)"
  if command -v pgrep >/dev/null && pgrep -x dockerd >/dev/null; then
    say "dockerd is running but not answering yet; waiting"
  else
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the engine must outlive this script and the test run that called it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
  fi
  for _ in $(seq 1 60); do
    docker_ok && break
    # An engine that already died will not answer; say so now rather than after a minute.
    if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then break; fi
    sleep 1
  done
  docker_ok || die "the Docker engine did not answer 'docker info' (waited up to 60 s); see $DOCKERD_LOG (last lines: $(tail -n 3 "$DOCKERD_LOG" 2>/dev/null | tr '\n' ' '))"
  say "Docker engine is up"
fi
