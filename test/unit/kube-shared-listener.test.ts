/**
 * The Kubernetes listener in shared mode, as the built agent bundle (targetless, so no nsenter):
 * every TCP connection is relayed to one agent process in shared mode, each session with its own
 * join line and token; the listener leaves with that agent, agent.ttl after the last session.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { AgentConnection } from '../../src/agent-link/connection.js';
import { AP_LISTENER_BANNER } from '../../common/protocol/agent/index.js';
import { freePort } from '../helpers/ports.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bundle = path.join(repo, 'agent/dist/agent.mjs');

before(() => {
  execFileSync(process.execPath, [path.join(repo, 'scripts/build-agent.mjs')], { stdio: 'inherit' });
});

/** A port-forwarded connection as the CLI sees it: the banner, then the join line, then AP. */
async function join(port: number, session: string, token: string): Promise<AgentConnection> {
  for (let i = 0; ; i++) {
    const socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!socket) {
      assert.ok(i < 100, 'the listener never listened');
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const [banner] = (await once(socket, 'data')) as [Buffer];
    assert.equal(banner.subarray(0, AP_LISTENER_BANNER.length).toString(), AP_LISTENER_BANNER);
    socket.pause();
    if (banner.length > AP_LISTENER_BANNER.length) socket.unshift(banner.subarray(AP_LISTENER_BANNER.length));
    socket.write(`${JSON.stringify({ session, token })}\n`);
    const conn = AgentConnection.connect(socket, { token, client: session });
    // Paused to put back what came after the banner; the link's reader is attached now.
    socket.resume();
    return conn;
  }
}

test('two sessions through one shared agent, each with its own token; the listener leaves after the last', async () => {
  const port = await freePort();
  const sock = path.join(mkdtempSync(path.join(os.tmpdir(), 'mirrord-kshared-')), 'agent.sock');
  const listener = spawn(process.execPath, [bundle], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      MIRRORD_AGENT_MODE: 'listen',
      MIRRORD_AGENT_SHARED: '1',
      MIRRORD_AGENT_TARGETLESS: '1',
      MIRRORD_AGENT_PORT: String(port),
      MIRRORD_AGENT_TOKEN: 'unused-in-shared-mode',
      MIRRORD_AGENT_SESSION: 'kshared',
      MIRRORD_AGENT_TTL: '1',
      MIRRORD_AGENT_SHARED_SOCKET: sock,
      MIRRORD_AGENT_LOG: 'info',
    },
  });
  let log = '';
  listener.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = once(listener, 'exit');
  try {
    const a = await join(port, 'sa', 'token-a').catch((err: Error) => assert.fail(`${err.message}\n${log}`));
    const b = await join(port, 'sb', 'token-b');
    // Each sees the other in agent.sessions: one agent serves both.
    assert.deepEqual(
      (await a.request('agent.sessions', {})).sessions.map((s) => s.session),
      ['sb'],
    );
    assert.deepEqual(
      (await b.request('agent.sessions', {})).sessions.map((s) => s.session),
      ['sa'],
    );
    a.close();
    assert.equal((await b.request('env.get', {})).env.PATH, process.env.PATH, 'b goes on after a left');
    b.close();
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0, log);
    assert.match(log, /no session for 1 s: leaving/);
  } finally {
    listener.kill('SIGKILL');
  }
});
