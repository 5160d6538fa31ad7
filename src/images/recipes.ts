/**
 * The agent image's recipe: its Dockerfile and the bundled agent, read from the installed package so
 * the image tag follows the exact agent code this CLI speaks to.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { AP_VERSION, PRODUCT_VERSION } from '../../common/version.js';
import { packageRoot } from '../package-root.js';
import { recipeTag, type ImageRecipe } from './build.js';
import { cachedTag } from './tag-cache.js';

export const AGENT_REPOSITORY = 'mirrord-agent';

const BUILD_FIRST = 'Build the agent first (npm run build), or reinstall mirrord.';

/** The agent image's files: its name in the build context, the file it comes from, what to do when it is missing. */
function agentImageSources(root: string): Array<{ name: string; file: string; hint: string }> {
  // Everything beside the Dockerfile is context too (an entrypoint script, say), plus the bundle.
  const imageDir = path.join(root, 'agent/image');
  let names: string[];
  try {
    names = readdirSync(imageDir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name);
  } catch {
    names = ['Dockerfile'];
  }
  if (!names.includes('Dockerfile')) names.push('Dockerfile');
  const sources = names.map((name) => ({ name, rel: `agent/image/${name}`, hint: 'The installation is incomplete: reinstall mirrord.' }));
  sources.push(
    { name: 'agent.mjs', rel: 'agent/dist/agent.mjs', hint: BUILD_FIRST },
    // The jq engine of jq header filters: its thread and jq-web's WebAssembly (agent/src/incoming/jq.ts).
    { name: 'jq-worker.cjs', rel: 'agent/dist/jq-worker.cjs', hint: BUILD_FIRST },
    { name: 'jq.wasm', rel: 'agent/dist/jq.wasm', hint: BUILD_FIRST },
    // The packet capture of passive mirroring (agent/capture/sniff.c).
    { name: 'mirrord-sniff', rel: 'agent/capture/build/mirrord-sniff', hint: BUILD_FIRST },
    { name: 'mirrord-sockhelper', rel: 'agent/sockhelper/build/mirrord-sockhelper', hint: BUILD_FIRST },
  );
  return sources.map(({ name, rel, hint }) => ({ name, file: path.join(root, rel), hint }));
}

// The protocol and version labels come from common/version.ts, so they cannot drift from the bundle's.
const agentLabels = () => ({ 'dev.mirrord.component': 'agent', 'dev.mirrord.protocol': String(AP_VERSION), 'dev.mirrord.version': PRODUCT_VERSION });

export function agentImageRecipe(root: string = packageRoot()): ImageRecipe {
  const files: Record<string, Buffer> = {};
  for (const { name, file, hint } of agentImageSources(root)) {
    try {
      files[name] = readFileSync(file);
    } catch (err) {
      throw new MirrordError(`the agent image needs ${file}, which cannot be read`, ExitCode.Internal, hint, { cause: err });
    }
  }
  return { repository: AGENT_REPOSITORY, files, labels: agentLabels() };
}

/**
 * recipeTag(agentImageRecipe(root)) without reading the files when their stat has not changed since
 * the last start that computed it (src/images/tag-cache.ts): what a warm join of a shared agent needs.
 */
export function agentImageTag(root: string = packageRoot()): string {
  const sources = agentImageSources(root);
  const salt = JSON.stringify({ repository: AGENT_REPOSITORY, labels: agentLabels(), names: sources.map((s) => s.name) });
  return cachedTag(
    sources.map((s) => s.file),
    salt,
    () => recipeTag(agentImageRecipe(root)),
  );
}

export const SIDECAR_REPOSITORY = 'mirrord-sidecar';

/** The container-mode sidecar: the bundled intproxy, the layer and the C helpers, built like the agent's image. */
export function sidecarImageRecipe(root: string = packageRoot()): ImageRecipe {
  const read = (rel: string) => {
    const file = path.join(root, rel);
    try {
      return readFileSync(file);
    } catch (err) {
      throw new MirrordError(`the sidecar image needs ${file}, which cannot be read`, ExitCode.Internal, 'Run `npm run build` in the mirrord checkout', {
        cause: err,
      });
    }
  };
  return {
    repository: SIDECAR_REPOSITORY,
    files: {
      Dockerfile: read('sidecar/image/Dockerfile'),
      'sidecar.mjs': read('sidecar/dist/sidecar.mjs'),
      'libmirrord_layer.so': read('layer/build/libmirrord_layer.so'),
      'mirrord-init': read('sidecar/build/mirrord-init'),
      'mirrord-capture': read('sidecar/build/mirrord-capture'),
    },
    labels: { 'dev.mirrord.component': 'sidecar' },
  };
}
