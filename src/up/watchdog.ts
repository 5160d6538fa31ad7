import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { parentGone } from '../parent-pipe.js';

/**
 * The compose watchdog (src/up/compose-run.ts starts it, detached): it reads its parent's pipe, and
 * when the pipe closes without `done` (the parent was killed), stops and removes the project, the
 * sidecars' volumes and the rewritten files. One pass, then it exits.
 */
export interface WatchdogSpec {
  stop: string[];
  down: string[];
  dir: string;
}

export async function runWatchdog(spec: WatchdogSpec, input: NodeJS.ReadableStream = process.stdin): Promise<void> {
  const lines = await parentGone(input);
  if (lines) cleanUp(spec, lines);
}

function cleanUp(spec: WatchdogSpec, lines: string[]): void {
  const run = (args: string[]) => {
    try {
      execFileSync('docker', args, { stdio: 'ignore', timeout: 120_000 });
    } catch {
      // The next step may still do it: down removes what stop could not reach.
    }
  };
  run(spec.stop);
  run(spec.down);
  const volumes = lines.filter((l) => l.startsWith('volumes ')).flatMap((l) => JSON.parse(l.slice('volumes '.length)) as string[]);
  if (volumes.length) run(['volume', 'rm', '-f', ...volumes]);
  rmSync(spec.dir, { recursive: true, force: true });
}
