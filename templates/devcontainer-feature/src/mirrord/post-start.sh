#!/bin/sh
# postStartCommand of the mirrord feature: starts the session with the feature's options. It runs
# with the user's secrets (a kubeconfig secret is read here) and never fails the container's start:
# `mirrord devcontainer start` exits 0 with a warning when the session cannot start.
. /usr/local/share/mirrord/options.env
[ "$MIRRORD_OPT_START" = true ] || exit 0
# Where the config file is searched from, for the entrypoint's start after a restart.
pwd > /run/mirrord/workspace 2>/dev/null || true
set --
[ -z "$MIRRORD_OPT_TARGET" ] || set -- "$@" --target "$MIRRORD_OPT_TARGET"
[ -z "$MIRRORD_OPT_NAMESPACE" ] || set -- "$@" --namespace "$MIRRORD_OPT_NAMESPACE"
[ -z "$MIRRORD_OPT_CONFIG_FILE" ] || set -- "$@" --config-file "$MIRRORD_OPT_CONFIG_FILE"
[ -z "$MIRRORD_OPT_SKIP" ] || set -- "$@" --skip "$MIRRORD_OPT_SKIP"
[ -z "$MIRRORD_OPT_KUBECONFIG" ] || set -- "$@" --kubeconfig "$MIRRORD_OPT_KUBECONFIG"
[ -z "$MIRRORD_OPT_KUBECONFIG_SECRET" ] || set -- "$@" --kubeconfig-secret "$MIRRORD_OPT_KUBECONFIG_SECRET"
exec mirrord devcontainer start --preload "$MIRRORD_OPT_PRELOAD" "$@"
