#!/bin/bash
# Default options (start on, no target): installed, the session did not start, nothing preloaded.
set -e
source dev-container-features-test-lib
check "mirrord runs" mirrord --version
check "no target: one warning line, exit 0" bash -c 'out=$(mirrord devcontainer start 2>&1) && [ "$(printf "%s\n" "$out" | wc -l)" = 1 ] && printf "%s" "$out" | grep -q "^mirrord: warning: no target given.*the dev container runs without mirrord$"'
check "no target: no session" bash -c '! mirrord devcontainer status'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
check "no LD_PRELOAD" bash -c '[ -z "${LD_PRELOAD:-}" ]'
reportResults
