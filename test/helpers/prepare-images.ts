/**
 * Builds the images end-to-end tests need before they start, so a first build (minutes) is not
 * counted inside any test's timeout. Run by test/run-all.sh; prints one line per image.
 */
import { createLogger, parseLevel } from '../../common/log.js';
import { agentImageRecipe, sidecarImageRecipe } from '../../src/images/recipes.js';
import { ensureBaseImage, ensureImage } from '../../src/images/build.js';
import { createProgress } from '../../src/progress.js';
import { docker, staticClientImage, toolsImage } from './docker-fixtures.js';

const log = createLogger('prepare-images', parseLevel(process.env.MIRRORD_LOG, 'info'));
const progress = createProgress();

async function timed(what: string, f: () => Promise<string>): Promise<void> {
  const started = Date.now();
  const tag = await f();
  progress.succeed();
  process.stderr.write(`prepare-images: ${what}: ${tag} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
}

try {
  await timed('base image', () => ensureBaseImage(docker(), { progress, log }));
  await timed('agent image', () => ensureImage(docker(), agentImageRecipe(), { progress, log }));
  await timed('sidecar image', () => ensureImage(docker(), sidecarImageRecipe(), { progress, log }));
  await timed('test tools image', () => toolsImage());
  await timed('static client image', () => staticClientImage());
} catch (err) {
  progress.fail();
  const msg = err && typeof err === 'object' && 'oneLine' in err ? (err as { oneLine(): string }).oneLine() : String(err);
  process.stderr.write(`prepare-images: ${msg}\n`);
  process.exitCode = 1;
}
