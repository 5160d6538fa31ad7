#!/bin/bash
# The remote user is codespace (uid 1000, passwordless sudo), as in Codespaces.
set -e
source dev-container-features-test-lib
check "runs as codespace" bash -c '[ "$(id -un)" = codespace ]'
check "mirrord runs" mirrord --version
check "/run/mirrord is the user's" bash -c '[ "$(stat -c %U /run/mirrord)" = codespace ]'
check "start without a target: a warning, exit 0" bash -c 'mirrord devcontainer start 2>&1 | grep -q "warning: no target given"'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
reportResults
