import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCode, MirrordError } from '../common/errors.js';

/**
 * The package root: compiled we live in dist/src/, under tsx in src/,
 * and installed under node_modules/mirrord/..., so walk up to our own package.json.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'mirrord') return dir;
      } catch {
        // an unreadable manifest is not ours; keep walking
      }
    }
    if (path.dirname(dir) === dir) {
      throw new MirrordError(`cannot find the mirrord package root above ${from}`, ExitCode.Internal);
    }
  }
}
