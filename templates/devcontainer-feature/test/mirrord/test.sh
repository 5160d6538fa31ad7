#!/bin/bash
# Default options (start on, no target): installed, the session did not start, nothing preloaded.
set -e
source dev-container-features-test-lib
check "mirrord runs" mirrord --version
check "no target: no session" bash -c '! mirrord devcontainer status'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
check "no LD_PRELOAD" bash -c '[ -z "${LD_PRELOAD:-}" ]'
reportResults
