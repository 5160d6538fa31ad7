import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { checkProgram, isStaticElf } from '../../src/program-check.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-progcheck-'));

describe('programs LD_PRELOAD cannot reach', () => {
  it('a statically linked executable is detected, a dynamic one is not', () => {
    writeFileSync(path.join(dir, 'p.c'), 'int main(void){return 0;}\n');
    execFileSync('gcc', ['-static', '-o', path.join(dir, 'static'), path.join(dir, 'p.c')]);
    execFileSync('gcc', ['-o', path.join(dir, 'dynamic'), path.join(dir, 'p.c')]);
    assert.equal(isStaticElf(path.join(dir, 'static')), true);
    assert.equal(isStaticElf(path.join(dir, 'dynamic')), false);
    assert.equal(isStaticElf(path.join(dir, 'p.c')), undefined, 'not ELF: no guess');
    assert.equal(checkProgram(path.join(dir, 'static')).static, true);
  });

  it('a #! script is judged by its interpreter, through env too', () => {
    writeFileSync(path.join(dir, 'script'), `#!/usr/bin/env static\necho hi\n`);
    chmodSync(path.join(dir, 'script'), 0o755);
    const c = checkProgram(path.join(dir, 'script'), dir);
    assert.equal(c.resolved, path.join(dir, 'static'));
    assert.equal(c.static, true);
    writeFileSync(path.join(dir, 'sh-script'), '#!/bin/sh\necho hi\n');
    assert.deepEqual(checkProgram(path.join(dir, 'sh-script')), { static: false, setid: false, resolved: '/bin/sh' });
  });

  it('a set-user-ID program of another user is detected (the loader drops LD_PRELOAD)', () => {
    const p = path.join(dir, 'suid');
    copyFileSync('/bin/true', p);
    chownSync(p, 65534, 65534);
    chmodSync(p, 0o4755);
    assert.equal(checkProgram(p).setid, process.getuid?.() !== 65534);
    chmodSync(p, 0o755);
    assert.equal(checkProgram(p).setid, false);
  });
});
