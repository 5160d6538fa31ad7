#!/bin/sh
# The mirrord devcontainer feature's install step (runs as root at image build). It needs no
# network: the build (scripts/build-feature.mjs) packed the single executable and the layer into
# payload/. Nothing is preloaded here: /etc/ld.so.preload is written by `mirrord devcontainer start`
# at run time only, so other features' install steps and image builds never see the layer.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=/usr/local/lib/mirrord
share=/usr/local/share/mirrord

if [ ! -x "$here/payload/mirrord" ]; then
  echo "mirrord feature: payload/mirrord is missing; use the feature from dist/devcontainer-feature (npm run build:feature)" >&2
  exit 1
fi
if command -v ldd >/dev/null 2>&1 && ldd "$here/payload/mirrord" 2>&1 | grep -q -e 'not found' -e 'not a dynamic'; then
  echo "mirrord feature: this image lacks what the mirrord executable needs (glibc, libstdc++); use a Debian or Ubuntu based image" >&2
  exit 1
fi

rm -rf "$dest"
mkdir -p "$dest" "$share"
cp -R "$here/payload/." "$dest/"
ln -sf "$dest/mirrord" /usr/local/bin/mirrord
cp "$here/entrypoint.sh" "$here/post-start.sh" "$share/"
chmod 755 "$share/entrypoint.sh" "$share/post-start.sh"

# The options, for post-start.sh (single-quoted: any value is kept as written).
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
  echo "# Written by the mirrord feature's install.sh from the feature's options."
  echo "MIRRORD_OPT_TARGET=$(q "${TARGET:-}")"
  echo "MIRRORD_OPT_NAMESPACE=$(q "${NAMESPACE:-}")"
  echo "MIRRORD_OPT_CONFIG_FILE=$(q "${CONFIGFILE:-}")"
  echo "MIRRORD_OPT_START=$(q "${START:-true}")"
  echo "MIRRORD_OPT_PRELOAD=$(q "${PRELOAD:-all}")"
  echo "MIRRORD_OPT_SKIP=$(q "${SKIPPROCESSES:-}")"
  echo "MIRRORD_OPT_KUBECONFIG=$(q "${KUBECONFIG:-}")"
  echo "MIRRORD_OPT_KUBECONFIG_SECRET=$(q "${KUBECONFIGSECRET:-}")"
} > "$share/options.env"

# The session's directory belongs to the user postStartCommand runs as.
mkdir -p /run/mirrord
user="${_REMOTE_USER:-root}"
if id "$user" >/dev/null 2>&1; then chown "$user" /run/mirrord; fi
chmod 755 /run/mirrord
echo "mirrord feature: installed $("$dest/mirrord" --version) in $dest"
