#!/bin/sh
# Runs at every container start, before postStartCommand: a session cannot survive a restart, so
# what the last one left (the layer in /etc/ld.so.preload, the session file) is cleared. The layer
# already ignores a stale session file; this keeps the preload list clean. Then the container's
# own command.
mirrord devcontainer stop >/dev/null 2>&1 || true
exec "$@"
