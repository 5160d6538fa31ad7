import { performance } from 'node:perf_hooks';
import type { Logger } from '../../common/log.js';

/**
 * The session start's phases for MIRRORD_LOG=debug: one line each, milliseconds since this process
 * started (Node's time origin), so `mirrord exec` shows where its start goes (bench/README.md,
 * bench:start).
 */
export function phase(log: Logger, name: string): void {
  log.debug(`start: ${name} at ${performance.now().toFixed(0)} ms`);
}
