#!/usr/bin/env bash
# `npm run demo`: installs/starts what it needs, builds, prepares the images (agent, test tools), and
# runs the embedded default demo (scripts/demo.ts; what it shows: README.md, "Set-up").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
npm run -s build
node --import tsx test/helpers/prepare-images.ts
exec node --import tsx scripts/demo.ts
