#!/bin/bash
# The remote user is codespace (uid 1000, passwordless sudo), as in Codespaces, and the kubeconfig
# secret is not a kubeconfig: postStartCommand warned in one line, the container started, nothing
# was preloaded.
set -e
source dev-container-features-test-lib
check "runs as codespace" bash -c '[ "$(id -un)" = codespace ]'
check "mirrord runs" mirrord --version
check "/run/mirrord is the user's" bash -c '[ "$(stat -c %U /run/mirrord)" = codespace ]'
check "the hook again: exit 0" /usr/local/share/mirrord/post-start.sh
check "the hook again: one warning line naming the secret" bash -c '/usr/local/share/mirrord/post-start.sh 2>&1 | grep -x "mirrord: warning: the secret MIRRORD_KUBECONFIG is not a kubeconfig .*; the dev container runs without mirrord"'
check "the hook again: one line only" bash -c '[ "$(/usr/local/share/mirrord/post-start.sh 2>&1 | wc -l)" = 1 ]'
check "no session" bash -c '! mirrord devcontainer status'
check "no kubeconfig written" bash -c '[ ! -e /run/mirrord/kubeconfig ]'
check "nothing in ld.so.preload" bash -c '! grep -qs mirrord /etc/ld.so.preload'
reportResults
