import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { ExitCode, MirrordError } from '../common/errors.js';

/** The program as the local PATH finds it, so a typo fails before any agent starts. */
export function findProgram(cmd: string, pathVar = process.env.PATH ?? ''): string {
  const candidates = cmd.includes('/')
    ? [path.resolve(cmd)]
    : pathVar
        .split(':')
        .filter(Boolean)
        .map((d) => path.join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next PATH entry
    }
  }
  throw new MirrordError(
    `command not found: ${cmd}`,
    ExitCode.Program,
    cmd.includes('/') ? 'Check the path and its execute bit' : 'Check the name and your PATH',
  );
}
