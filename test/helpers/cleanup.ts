/**
 * Removes containers and networks that test runs left behind (see TEST_LABEL). Run by test/run-all.sh:
 *   cleanup.ts --stale     at start: runs whose process is gone (crashed, killed), any age; a run of
 *                          another live process (a colleague's run on this machine) is left alone
 *   cleanup.ts --run ID    at the end: this run's own resources
 *   cleanup.ts --all       everything with the label
 */
import { TEST_LABEL, docker, listContainers, removeTestResources } from './docker-fixtures.js';

const MAX_AGE_S = 3 * 3600;

/** Run ids look like run-PID-EPOCH (see RUN_ID); anything else is treated as abandoned. */
function isStale(runId: string): boolean {
  const m = /^run-(\d+)-(\d+)$/.exec(runId);
  if (!m) return true;
  if (Date.now() / 1000 - Number(m[2]) > MAX_AGE_S) return true;
  try {
    process.kill(Number(m[1]), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function main(args: string[]): Promise<void> {
  const [mode, id] = args;
  if (mode === '--all') return removeTestResources();
  if (mode === '--run' && id) return removeTestResources(id);
  if (mode !== '--stale') throw new Error('usage: cleanup.ts --stale | --run ID | --all');
  const runIds = new Set<string>();
  for (const c of await listContainers(TEST_LABEL)) runIds.add(c.Labels[TEST_LABEL] ?? '');
  for (const n of await docker().listNetworks({ filters: { label: [TEST_LABEL] } })) runIds.add(n.Labels?.[TEST_LABEL] ?? '');
  for (const runId of runIds) {
    if (!isStale(runId)) continue;
    process.stderr.write(`cleanup: removing leftovers of test run '${runId}'\n`);
    await removeTestResources(runId);
  }
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`cleanup: could not remove test resources: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
