import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeEnv, wildcardMatcher } from '../../src/env/merge.js';

const local = { PATH: '/local/bin', HOME: '/root', A: 'local-a', KEEP: 'k' };
const remote = { PATH: '/remote/bin', HOME: '/app', HOSTNAME: 'pod', A: 'remote-a', B_ONE: '1', B_TWO: '2', C: 'c', MIRRORD_LAYER_ADDR: 'x' };

describe('env merge', () => {
  it('remote wins over local, machine variables never copied', () => {
    const { env, fromRemote } = mergeEnv(local, remote, {});
    assert.equal(env.A, 'remote-a');
    assert.equal(env.PATH, '/local/bin');
    assert.equal(env.HOME, '/root');
    assert.equal(env.HOSTNAME, undefined);
    assert.equal(env.MIRRORD_LAYER_ADDR, undefined);
    assert.equal(env.KEEP, 'k');
    assert.deepEqual(fromRemote.sort(), ['A', 'B_ONE', 'B_TWO', 'C']);
  });
  it('include and exclude with wildcards', () => {
    assert.deepEqual(mergeEnv({}, remote, { include: ['B_*'] }).fromRemote.sort(), ['B_ONE', 'B_TWO']);
    assert.deepEqual(mergeEnv({}, remote, { exclude: ['B_*', 'C'] }).fromRemote, ['A']);
    assert.deepEqual(mergeEnv({}, remote, { include: ['B_*', 'PATH'], exclude: ['B_T?O'] }).fromRemote, ['B_ONE']);
  });
  it('env_file then override apply last', () => {
    const { env } = mergeEnv(local, remote, { env_file: '/x.env', override: { C: 'over' } }, () => 'A=from-file\nC=file-c\n# comment\nQ="quoted value"\n');
    assert.equal(env.A, 'from-file');
    assert.equal(env.C, 'over');
    assert.equal(env.Q, 'quoted value');
  });
  it('a missing env_file is a config error', () => {
    assert.throws(() => mergeEnv({}, {}, { env_file: '/does/not/exist.env' }), /cannot read env_file \/does\/not\/exist\.env: ENOENT/);
  });
  it('wildcards are whole-name', () => {
    const m = wildcardMatcher(['DB_*']);
    assert.equal(m('DB_HOST'), true);
    assert.equal(m('MY_DB_HOST'), false);
  });
});
