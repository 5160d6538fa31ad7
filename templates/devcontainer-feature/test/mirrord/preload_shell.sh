#!/bin/bash
# preload: shell with an unreachable target: postStartCommand warned, the container started, and
# nothing was preloaded, neither in ld.so.preload nor in /etc/profile.d.
set -e
source dev-container-features-test-lib
check "the option reached the hook" grep -q "MIRRORD_OPT_PRELOAD='shell'" /usr/local/share/mirrord/options.env
check "no session" bash -c '! mirrord devcontainer status'
check "the daemon said why" grep -q 'no Docker container named "no-such-target-here"' /run/mirrord/daemon.log
check "no profile script" bash -c '[ ! -e /etc/profile.d/mirrord.sh ]'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
reportResults
