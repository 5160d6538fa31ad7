/**
 * The Kubernetes listener of one session (not shared), as the built agent bundle (targetless, so no
 * nsenter): the port-forwarded connection is handed to the agent child as its stdin and stdout, so
 * no byte of the link passes through the listener; the banner comes first; a second client is
 * refused while one is connected; the listener leaves agent.ttl after the session.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readlinkSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { AgentConnection } from '../../src/agent-link/connection.js';
import { AP_LISTENER_BANNER } from '../../common/protocol/agent/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bundle = path.join(repo, 'agent/dist/agent.mjs');

before(() => {
  execFileSync(process.execPath, [path.join(repo, 'scripts/build-agent.mjs')], { stdio: 'inherit' });
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function dial(port: number): Promise<net.Socket> {
  for (let i = 0; ; i++) {
    const socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket) return socket;
    assert.ok(i < 100, 'the listener never listened');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The banner, then the AP handshake with the session's token, on one connection. */
async function connect(socket: net.Socket, token: string): Promise<AgentConnection> {
  const [banner] = (await once(socket, 'data')) as [Buffer];
  assert.equal(banner.subarray(0, AP_LISTENER_BANNER.length).toString(), AP_LISTENER_BANNER);
  socket.pause();
  if (banner.length > AP_LISTENER_BANNER.length) socket.unshift(banner.subarray(AP_LISTENER_BANNER.length));
  const conn = AgentConnection.connect(socket, { token, client: 'klisten' });
  socket.resume();
  return conn;
}

/** The children of a process, from /proc (the listener's agent child). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The socket inodes of the TCP connections whose local port is `port` (/proc/net/tcp, IPv4). */
function tcpInodes(port: number): Set<string> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const rows = readFileSync('/proc/net/tcp', 'utf8').trim().split('\n').slice(1);
  // Columns: sl, local address (IP:PORT in hex), remote address, state (01 = established), ..., inode (10th).
  return new Set(
    rows
      .map((r) => r.trim().split(/\s+/))
      .filter((c) => c[1]!.endsWith(`:${hex}`) && c[3] === '01')
      .map((c) => c[9]!),
  );
}

test("one session: the agent child reads and writes the client's connection itself; the listener leaves after it", async () => {
  const port = await freePort();
  const token = 'listener-token';
  const listener = spawn(process.execPath, [bundle], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      MIRRORD_AGENT_MODE: 'listen',
      MIRRORD_AGENT_TARGETLESS: '1',
      MIRRORD_AGENT_PORT: String(port),
      MIRRORD_AGENT_TOKEN: token,
      MIRRORD_AGENT_SESSION: 'klisten',
      MIRRORD_AGENT_TTL: '1',
      MIRRORD_AGENT_LOG: 'info',
    },
  });
  let log = '';
  listener.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = once(listener, 'exit');
  try {
    const socket = await dial(port);
    const conn = await connect(socket, token).catch((err: Error) => assert.fail(`${err.message}\n${log}`));
    assert.equal((await conn.request('env.get', {})).env.PATH, process.env.PATH);

    // The agent child's stdin and stdout are the accepted TCP connection itself, not the socketpairs
    // Node makes for a child's piped stdio (which the listener would relay).
    const [child] = childrenOf(listener.pid!);
    assert.ok(child, `the listener has no agent child\n${log}`);
    const accepted = tcpInodes(port);
    for (const fd of [0, 1]) {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${child}/fd/${fd}`))?.[1];
      assert.ok(inode && accepted.has(inode), `fd ${fd} of the agent child is not the connection to port ${port}`);
    }

    // A second client while the first is connected is refused: it gets no banner, only the close.
    const second = await dial(port);
    const got: Buffer[] = [];
    second.on('data', (d: Buffer) => got.push(d));
    second.on('error', () => undefined);
    await once(second, 'close');
    assert.equal(Buffer.concat(got).length, 0);

    // Megabytes both ways through the handed-over connection: an echo stream to a local server.
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    try {
      const stream = await conn.connectTcp('127.0.0.1', (echo.address() as net.AddressInfo).port);
      const payload = Buffer.alloc(8 * 1024 * 1024, 0x5a);
      const back: Buffer[] = [];
      let n = 0;
      const done = new Promise<void>((resolve) =>
        stream.on('data', (d: Buffer) => {
          back.push(d);
          if ((n += d.length) >= payload.length) resolve();
        }),
      );
      stream.write(payload);
      await done;
      assert.ok(Buffer.concat(back).equals(payload));
      stream.destroy();
    } finally {
      echo.close();
    }

    conn.close();
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0, log);
    assert.match(log, /no client for 1 s: exiting/);
  } finally {
    listener.kill('SIGKILL');
  }
});
