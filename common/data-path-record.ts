/**
 * A test hook: the e2e tier reruns on the stream (agent.fd_passing off) exactly the test files in
 * which a program's traffic took the fast path, so the fallback is proven wherever the fast path
 * ran. run-all.sh sets MIRRORD_TEST_DATA_PATH_DIR; test/helpers/test-file-env.ts gives every test
 * file's processes MIRRORD_TEST_FILE. Outside the tests neither is set and this does nothing.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

let recorded = false;

export function recordFastPath(): void {
  const dir = process.env.MIRRORD_TEST_DATA_PATH_DIR;
  const file = process.env.MIRRORD_TEST_FILE;
  if (recorded || !dir || !file) return;
  recorded = true;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, createHash('sha1').update(file).digest('hex')), `${file}\n`);
  } catch {
    // A record that cannot be written only narrows the rerun; the session must not notice.
  }
}
