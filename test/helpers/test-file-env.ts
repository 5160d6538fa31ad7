// Loaded with --import into every e2e test file's process (test/run-all.sh): the programs a test
// starts inherit the file's path, for common/data-path-record.ts.
const file = process.argv[1];
if (file?.endsWith('.test.ts')) process.env.MIRRORD_TEST_FILE = file;
