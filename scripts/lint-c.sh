#!/usr/bin/env bash
# Checks the C sources against the root .clang-format: layer/ (every .c and .h) and
# sidecar/native/*.c when that folder exists. Installs clang-format with apt-get when it is
# missing and the machine allows it (root, Debian/Ubuntu); otherwise fails saying what to do.
# Fix findings with: scripts/lint-c.sh --fix (npm run format), or clang-format -i FILE...
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-format >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "lint-c: clang-format missing; installing it with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq clang-format >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq clang-format >/dev/null 2>&1; } || true
  fi
  if ! command -v clang-format >/dev/null 2>&1; then
    echo "lint-c: clang-format not found and could not be installed (needs root and apt-get);" >&2
    echo "lint-c: install it (Debian: apt-get install -y clang-format) and run again" >&2
    exit 2
  fi
fi

files=()
while IFS= read -r -d '' f; do files+=("$f"); done < <(
  find layer -type d \( -name 'build' -o -name 'build-*' \) -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print0
  if [ -d sidecar/native ]; then find sidecar/native -maxdepth 1 -type f -name '*.c' -print0; fi
  if [ -d agent/capture ]; then find agent/capture -maxdepth 1 -type f -name '*.c' -print0; fi
  if [ -d agent/sockhelper ]; then find agent/sockhelper -maxdepth 1 -type f -name '*.c' -print0; fi
)
if [ ${#files[@]} -eq 0 ]; then
  echo "lint-c: no C sources found" >&2
  exit 1
fi

if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if clang-format --dry-run -Werror "${files[@]}"; then
  echo "lint-c: ${#files[@]} files formatted ($(clang-format --version | head -1))"
else
  echo "lint-c: the files above differ from .clang-format; fix with: clang-format -i FILE..." >&2
  exit 1
fi
