#!/bin/sh
# Records what an install step after mirrord's sees: no ld.so.preload entry and no LD_PRELOAD.
set -e
p=none
if grep -qs mirrord /etc/ld.so.preload; then p=listed; fi
v=fail
if mirrord --version >/dev/null 2>&1; then v=ok; fi
printf 'preload=%s ld_preload=%s\nversion=%s\n' "$p" "${LD_PRELOAD:-}" "$v" > /usr/local/share/after-mirrord.txt
