import { spawnSync } from 'node:child_process';
import { createLogger } from '../common/log.js';
import { ensureImage } from '../src/images/build.js';
import { agentImageRecipe, sidecarImageRecipe } from '../src/images/recipes.js';
import { createProgress } from '../src/progress.js';
import { docker, toolsImage } from '../test/helpers/docker-fixtures.js';

/** The middle value (the upper one of an even count). */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Milliseconds from launch to exit of a command that must succeed (MIRRORD_LOG=error). */
export function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, MIRRORD_LOG: 'error' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return ms;
}

/** The agent and sidecar images built (so no round pays for a build), and the test tools image's tag. */
export async function prepareImages(): Promise<string> {
  const progress = createProgress();
  const log = createLogger('bench');
  await ensureImage(docker(), agentImageRecipe(), { progress, log });
  await ensureImage(docker(), sidecarImageRecipe(), { progress, log });
  const image = await toolsImage();
  progress.succeed();
  return image;
}
