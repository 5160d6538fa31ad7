#!/bin/bash
# start: false. A feature installed after this one built without the layer (its install step
# recorded what it saw), and the container runs with nothing preloaded.
set -e
source dev-container-features-test-lib
check "mirrord runs" mirrord --version
check "the later feature saw no preload" grep -qx 'preload=none ld_preload=' /usr/local/share/after-mirrord.txt
check "the later feature could run mirrord" grep -qx 'version=ok' /usr/local/share/after-mirrord.txt
check "no session" bash -c '! mirrord devcontainer status'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
reportResults
