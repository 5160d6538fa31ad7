/**
 * The built agent bundle as a real process on stdin/stdout pipes, as Docker runs it.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentConnection, AgentLinkError } from '../../src/agent-link/connection.js';
import { AP_VERSION } from '../../common/version.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bundle = path.join(repo, 'agent/dist/agent.mjs');

before(() => {
  execFileSync(process.execPath, [path.join(repo, 'scripts/build-agent.mjs')], { stdio: 'inherit' });
});

function runAgent(env: Record<string, string>): { child: ChildProcess; link: Duplex; stderr: () => string; exited: Promise<[number | null, string | null]> } {
  const child = spawn(process.execPath, [bundle], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  const link = Duplex.from({ readable: child.stdout!, writable: child.stdin! });
  link.on('error', () => undefined); // a child that exits early closes its pipes under us
  return { child, link, stderr: () => err, exited };
}

test('handshake, env.get, and exit 0 when stdin closes', async () => {
  const a = runAgent({ MIRRORD_AGENT_TOKEN: 'tok', MIRRORD_AGENT_TARGET_PID: String(process.pid), MIRRORD_AGENT_LOG: 'debug', MARKER: 'agent-proc' });
  const conn = await AgentConnection.connect(a.link, { token: 'tok' });
  assert.equal(conn.info.targetPid, process.pid);
  const { env } = await conn.request('env.get', {});
  assert.equal(env.PATH, process.env.PATH);
  const self = await conn.request('agent.info', {});
  assert.equal(self.version, AP_VERSION);
  conn.close();
  const [codeOrNull] = await a.exited;
  assert.equal(codeOrNull, 0, a.stderr());
  assert.match(a.stderr(), /\[mirrord-agent\] info: link ended: the peer ended the link/);
});

test('a wrong token: HELLO_ERR reaches the client, then the agent exits', async () => {
  const a = runAgent({ MIRRORD_AGENT_TOKEN: 'tok', MIRRORD_AGENT_TARGET_PID: '1' });
  await assert.rejects(AgentConnection.connect(a.link, { token: 'bad' }), (e) => e instanceof AgentLinkError && /wrong session token/.test(e.message));
  const [codeOrNull] = await a.exited;
  assert.equal(codeOrNull, 0);
});

test('SIGTERM ends the agent with status 0', async () => {
  const a = runAgent({ MIRRORD_AGENT_TOKEN: 'tok' });
  const conn = await AgentConnection.connect(a.link, { token: 'tok' });
  const closed = new Promise<AgentLinkError | undefined>((r) => conn.onClose(r));
  a.child.kill('SIGTERM');
  const [codeOrNull] = await a.exited;
  assert.equal(codeOrNull, 0);
  assert.equal((await closed)?.code, 'ELINK', 'the client sees the link drop');
});

test('without a token the agent refuses to start', async () => {
  const a = runAgent({});
  const [codeOrNull] = await a.exited;
  assert.equal(codeOrNull, 2);
  assert.match(a.stderr(), /MIRRORD_AGENT_TOKEN is not set/);
});
