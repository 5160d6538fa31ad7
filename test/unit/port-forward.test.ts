import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseForward } from '../../src/commands/port-forward.js';

describe('port-forward specs', () => {
  it('[LPORT:]HOST:RPORT, with names and bracketed IPv6', () => {
    assert.deepEqual(parseForward('6380:redis:6379'), { localPort: 6380, host: 'redis', remotePort: 6379 });
    assert.deepEqual(parseForward('db.internal:5432'), { localPort: 5432, host: 'db.internal', remotePort: 5432 });
    assert.deepEqual(parseForward('8080:[fd00::1]:80'), { localPort: 8080, host: 'fd00::1', remotePort: 80 });
  });
  it('rejects what it cannot use, with the expected form', () => {
    for (const bad of ['redis', '6380:redis', 'a:b:c', '0:redis:6379', 'redis:70000', '']) {
      assert.throws(() => parseForward(bad), /invalid forward/, bad);
    }
  });
});
