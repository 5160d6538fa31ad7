/**
 * A target whose /proc files outgrow one page: an environment of 12 KiB and a mount table of 40+
 * entries. The agent runs on Node 18, whose fs.promises.readFile returns only the first read(2) of a
 * /proc file; for mountinfo (a seq_file: one page per read) the last mounts went missing
 * (agent/src/proc.ts). environ answers whole reads, and is checked so it stays so.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runContainer, toolsImage, type TestContainer } from '../helpers/docker-fixtures.js';

describe('targets with long /proc files', { timeout: 300_000 }, () => {
  let target: TestContainer;
  let dir = '';
  const BIG = 'x'.repeat(12 * 1024);

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-proc-'));
    const binds: string[] = [];
    for (let i = 0; i < 40; i++) {
      mkdirSync(path.join(dir, `m${i}`));
      binds.push(`${path.join(dir, `m${i}`)}:/mnt/a-fairly-long-mount-point-name-${i}:ro`);
    }
    mkdirSync(path.join(dir, 'last'));
    writeFileSync(path.join(dir, 'last', 'settings.json'), '{"from":"the last mount"}\n');
    // Docker mounts shallower paths first, so a deeper one is listed after the 40 others.
    binds.push(`${path.join(dir, 'last')}:/data/deeper/than/the/others:ro`);
    target = await runContainer({ name: 'proc-limits', cmd: ['sleep', 'infinity'], env: { FIRST: 'first', BIG, LAST_ONE: 'last' }, binds });
  });

  after(async () => {
    await target?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the whole environment reaches the program, the last variable included', async () => {
    const r = await runCli(['exec', '-t', `docker/${target.name}`, '--', 'sh', '-c', 'echo "$FIRST ${#BIG} $LAST_ONE"']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `first ${BIG.length} last`);
  });

  it('a mount listed after the first page of mountinfo is copied into a local container', async () => {
    // fs mode local: the only way the file can appear is the mounted-file copy.
    const r = await runCli(
      [
        'container',
        '--fs-mode',
        'local',
        '-t',
        `docker/${target.name}`,
        '--',
        'docker',
        'run',
        '--rm',
        await toolsImage(),
        'cat',
        '/data/deeper/than/the/others/settings.json',
      ],
      {
        timeoutMs: 120_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{"from":"the last mount"}\n');
  });
});
