#!/bin/sh
# Runs at every container start (a `docker restart` too), before postStartCommand. A session cannot
# survive a restart, so what the last one left (the layer in /etc/ld.so.preload, the session file)
# is cleared first; the layer already ignores a stale session file, this keeps the preload list
# clean. Then, with the option start on, the session is started again in the background, from the
# workspace folder postStartCommand last ran in: postStartCommand runs only when the tooling starts
# the container, a plain `docker restart` runs only this. At the container's first start there is
# no such folder yet: postStartCommand starts the session then (a start from / here would win the
# race with a session lacking the workspace's config file). The two starts are serialised by
# mirrord (the second finds the session live). Then the container's own command.
# The entrypoint runs as the container's user (often root) and postStartCommand as the remote user,
# who owns /run/mirrord: state written here as root would lock the remote user out of it.
owner=$(stat -c %U /run/mirrord 2>/dev/null || echo root)
as_owner() {
  if [ "$(id -u)" = 0 ] && [ "$owner" != root ]; then su -s /bin/sh "$owner" -c 'exec "$@"' -- sh "$@"; else "$@"; fi
}
as_owner mirrord devcontainer stop >/dev/null 2>&1 || true
. /usr/local/share/mirrord/options.env
if [ "$MIRRORD_OPT_START" = true ] && [ -f /run/mirrord/workspace ]; then
  (
    cd "$(cat /run/mirrord/workspace 2>/dev/null || echo /)" 2>/dev/null || cd /
    as_owner /usr/local/share/mirrord/post-start.sh >/run/mirrord/entrypoint.log 2>&1
    [ "$(id -u)" != 0 ] || [ "$owner" = root ] || chown "$owner" /run/mirrord/entrypoint.log
  ) </dev/null &
fi
exec "$@"
