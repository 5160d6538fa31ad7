#!/usr/bin/env node
// Builds the devcontainer feature into dist/devcontainer-feature/ (a features "project folder":
// src/mirrord/ is the feature, as `devcontainer features test|package` expect): the sources from
// templates/devcontainer-feature/, the package's version stamped in, and payload/ holding the single
// executable with its assets (dist/sea/mirrord, from scripts/build-sea.mjs), so that install.sh
// needs no network. `--into DIR` also copies the built feature to DIR (this repository's own dev
// container uses it from .devcontainer/mirrord: local features live inside .devcontainer/).
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { versions } from './write-version.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sea = path.join(repo, 'dist/sea/mirrord');
const out = path.join(repo, 'dist/devcontainer-feature');
if (!existsSync(path.join(sea, 'mirrord'))) throw new Error('build-feature: dist/sea/mirrord is missing; run `npm run build:sea` first');

rmSync(out, { recursive: true, force: true });
cpSync(path.join(repo, 'templates/devcontainer-feature'), out, { recursive: true });
const feature = path.join(out, 'src/mirrord');
cpSync(sea, path.join(feature, 'payload'), { recursive: true });
const manifest = path.join(feature, 'devcontainer-feature.json');
const json = JSON.parse(readFileSync(manifest, 'utf8'));
json.version = versions().PRODUCT_VERSION;
writeFileSync(manifest, JSON.stringify(json, null, 2) + '\n');
console.log(`build-feature: ${path.relative(repo, feature)} (mirrord ${json.version})`);
const into = process.argv.indexOf('--into');
if (into >= 0) {
  const dir = process.argv[into + 1];
  if (!dir) throw new Error('build-feature: --into needs a directory');
  const dest = path.resolve(dir);
  rmSync(dest, { recursive: true, force: true });
  cpSync(feature, dest, { recursive: true });
  console.log(`build-feature: copied to ${path.relative(repo, dest) || dest}`);
}
