/**
 * The agent image's recipe: its Dockerfile and the bundled agent, read from the installed package so
 * the image tag follows the exact agent code this CLI speaks to.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { AP_VERSION, PRODUCT_VERSION } from '../../common/version.js';
import { packageRoot } from '../package-root.js';
import type { ImageRecipe } from './build.js';

export const AGENT_REPOSITORY = 'mirrord-agent';

export function agentImageRecipe(root: string = packageRoot()): ImageRecipe {
  const read = (rel: string, hint: string) => {
    const file = path.join(root, rel);
    try {
      return readFileSync(file);
    } catch (err) {
      throw new MirrordError(`the agent image needs ${file}, which cannot be read`, ExitCode.Internal, hint, { cause: err });
    }
  };
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
  const files: Record<string, Buffer> = {};
  for (const name of names) files[name] = read(`agent/image/${name}`, 'The installation is incomplete: reinstall mirrord.');
  files['agent.mjs'] = read('agent/dist/agent.mjs', 'Build the agent first (npm run build), or reinstall mirrord.');
  // The jq engine of jq header filters: its thread and jq-web's WebAssembly (agent/src/incoming/jq.ts).
  files['jq-worker.cjs'] = read('agent/dist/jq-worker.cjs', 'Build the agent first (npm run build), or reinstall mirrord.');
  files['jq.wasm'] = read('agent/dist/jq.wasm', 'Build the agent first (npm run build), or reinstall mirrord.');
  // The packet capture of passive mirroring (agent/capture/sniff.c).
  files['mirrord-sniff'] = read('agent/capture/build/mirrord-sniff', 'Build the agent first (npm run build), or reinstall mirrord.');
  files['mirrord-sockhelper'] = read('agent/sockhelper/build/mirrord-sockhelper', 'Build the agent first (npm run build), or reinstall mirrord.');
  // The protocol and version labels come from common/version.ts, so they cannot drift from the bundle's.
  const labels = { 'dev.mirrord.component': 'agent', 'dev.mirrord.protocol': String(AP_VERSION), 'dev.mirrord.version': PRODUCT_VERSION };
  return { repository: AGENT_REPOSITORY, files, labels };
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
