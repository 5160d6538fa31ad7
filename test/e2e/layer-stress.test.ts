import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runCli, runPlain } from '../helpers/cli.js';
import { runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

/**
 * The layer's C test programs (layer/build/tests/, built by npm run build) under the real CLI
 * against a real target: 50 forked children and 100 threads connecting at once, and a program
 * that execs or spawns with an environment of only PATH. The target's greeting server listens on
 * its own 127.0.0.1, so a greeting proves the connection went through the agent.
 */
const tag = randomBytes(3).toString('hex');
const PORT = 41000 + (parseInt(tag, 16) % 1000);
const GREETING = `inside-${tag}`;
const TESTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../layer/build/tests');
const SERVER = `import socketserver
class H(socketserver.BaseRequestHandler):
    def handle(self): self.request.sendall(b"${GREETING}\\n")
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 256
    daemon_threads = True
S(("127.0.0.1", ${PORT}), H).serve_forever()`;

let target: TestContainer;

async function exec(cmd: string[]) {
  return runCli(['exec', '-t', `docker/${target.name}`, '--', ...cmd], { timeoutMs: 120_000 });
}

describe('the layer under load and across exec, against a real target', { timeout: 600_000 }, () => {
  before(async () => {
    target = await runContainer({ name: 'e2e-stress-target', cmd: ['python3', '-c', SERVER], waitFor: { tcpPort: PORT } });
  });
  after(async () => {
    await target?.remove().catch(() => undefined);
  });

  it('without mirrord the greeting port is not there', async () => {
    const r = await runPlain(path.join(TESTS, 't_connect'), ['v4', '127.0.0.1', String(PORT)]);
    assert.notEqual(r.code, 0, r.stdout);
  });

  it('50 forked children connect at once: every one served, no descriptor leaked in the parent', async () => {
    const r = await exec([path.join(TESTS, 't_forkstress'), '127.0.0.1', String(PORT), '50']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    const served = lines.filter((l) => new RegExp(`^child pid=\\d+ connect=0 peer=127\\.0\\.0\\.1:${PORT} read=${GREETING}$`).test(l));
    assert.equal(served.length, 50, r.stdout);
    const fds = /^fds before=(\d+) after=(\d+)$/.exec(lines.at(-1) ?? '');
    assert.ok(fds, r.stdout);
    assert.equal(fds[2], fds[1]);
  });

  it('100 threads resolve (through the agent) and connect at once', async () => {
    const r = await exec([path.join(TESTS, 't_threads'), 'localhost', String(PORT), '100']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const served = r.stdout.split('\n').filter((l) => l.endsWith(` connect=0 peer=127.0.0.1:${PORT} read=${GREETING}`));
    assert.equal(served.length, 100, r.stdout);
  });

  for (const mode of ['execve', 'spawn', 'vfork']) {
    it(`${mode} with envp = {PATH}: the new program still reaches the target`, async () => {
      const r = await exec([path.join(TESTS, 't_exec'), mode, path.join(TESTS, 't_connect'), 'v4', '127.0.0.1', String(PORT)]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.ok(r.stdout.includes(`read=${GREETING}`), r.stdout);
    });
  }
});
