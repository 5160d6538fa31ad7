/** Removes every container and network a test run left behind (see TEST_LABEL); run by test/run-all.sh. */
import { removeTestResources } from './docker-fixtures.js';

try {
  await removeTestResources();
} catch (err) {
  process.stderr.write(`cleanup: could not remove test resources: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
