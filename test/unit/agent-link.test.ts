/**
 * AgentConnection against the real serveAgent over an in-memory link. Outgoing connections go to
 * servers on 127.0.0.1 started here (the agent runs in this process's network namespace).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { AgentConnection, AgentLinkError } from '../../src/agent-link/connection.js';
import { ApFrameReader, ApKind, encodeHelloOk } from '../../common/protocol/agent/index.js';
import { AP_VERSION, PRODUCT_VERSION } from '../../common/version.js';
import { serveAgent } from '../../agent/src/server.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TOKEN, linkPair, startAgent, startFakeDns } from '../helpers/agent-harness.js';

const MiB = 1024 * 1024;

async function listen(onConn: (s: net.Socket) => void, opts: net.ServerOpts = {}) {
  const sockets = new Set<net.Socket>();
  const closed: net.Socket[] = [];
  const server = net.createServer(opts, (s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      closed.push(s);
    });
    s.on('error', () => undefined);
    onConn(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    sockets,
    closed,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The remote end of a socket sees its close a moment after the agent's end does. */
async function allClosed(sockets: Set<net.Socket>): Promise<void> {
  for (let i = 0; i < 200 && sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(sockets.size, 0, 'the agent left a socket open');
}

const expectCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof AgentLinkError, `expected AgentLinkError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return true;
};

/** Reads to EOF without destroying the stream (an async iterator would), so writing may go on. */
function readAll(s: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** A target root whose resolv.conf points at a DNS server that never answers. */
async function silentDnsRoot() {
  const dns = await startFakeDns({}, true);
  const root = await mkdtemp(path.join(os.tmpdir(), 'mirrord-agent-'));
  await mkdir(path.join(root, 'etc'));
  await writeFile(path.join(root, 'etc/resolv.conf'), 'nameserver 127.0.0.1\n');
  return {
    opts: { root, dnsPort: dns.port },
    close: async () => {
      await dns.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

test('handshake succeeds and agent.info answers', async () => {
  const h = await startAgent();
  assert.deepEqual(h.conn.info, { version: AP_VERSION, agent: PRODUCT_VERSION, targetPid: process.pid, agentPid: process.pid });
  const info = await h.conn.request('agent.info', {});
  assert.equal(info.targetPid, process.pid);
  assert.equal(typeof info.hostname, 'string');
  h.conn.close();
  await h.agentDone;
  assert.equal(h.conn.closed, true);
});

test('a wrong token is refused with EHANDSHAKE and the agent ends', async () => {
  const pair = linkPair();
  const agentDone = serveAgent(pair.agent, { token: TOKEN, targetPid: process.pid });
  await assert.rejects(AgentConnection.connect(pair.client, { token: 'nope' }), (err) => {
    expectCode('EHANDSHAKE')(err);
    assert.match((err as Error).message, /wrong session token/);
    return true;
  });
  await agentDone;
});

test('handshake times out against a peer that never answers', async () => {
  const pair = linkPair();
  pair.agent.on('error', () => undefined).resume();
  const t0 = Date.now();
  await assert.rejects(AgentConnection.connect(pair.client, { token: TOKEN, handshakeTimeoutMs: 200 }), expectCode('EHANDSHAKE'));
  assert.ok(Date.now() - t0 < 1_000);
});

test('env.get returns the target process environment; unknown method and bad params fail', async () => {
  const h = await startAgent();
  const { env } = await h.conn.request('env.get', {});
  assert.equal(env.PATH, process.env.PATH);
  await assert.rejects(h.conn.request('nope' as 'env.get', {}), expectCode('ENOSYS'));
  await assert.rejects(h.conn.request('dns.lookup', { name: 'x', family: 5 as 4 }), expectCode('EINVAL'));
  h.conn.close();
  await h.agentDone;

  const gone = await startAgent({ targetPid: 0x3ffffff0 });
  await assert.rejects(gone.conn.request('env.get', {}), expectCode('ENOENT'));
  gone.conn.close();
  await gone.agentDone;
});

test('outgoing TCP: 50 MiB each way intact, memory bounded', async () => {
  const echo = await listen((s) => s.pipe(s));
  const h = await startAgent();
  const stream = await h.conn.connectTcp('127.0.0.1', echo.port);
  assert.equal(stream.agentSocket?.localAddress, '127.0.0.1');

  const total = 50 * MiB;
  const block = randomBytes(MiB);
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let received = 0;
  // What sits in buffers between the two ends: the link's pipes and the stream's own queues. GC
  // timing makes process-wide memory figures too noisy to assert on; these are exact.
  let peakBacklog = 0;
  const backlog = () =>
    h.up.readableLength + h.up.writableLength + h.down.readableLength + h.down.writableLength + stream.readableLength + stream.writableLength;
  const sampler = setInterval(() => (peakBacklog = Math.max(peakBacklog, backlog())), 5);
  const t0 = process.hrtime.bigint();

  const reading = (async () => {
    for await (const c of stream) {
      got.update(c as Buffer);
      received += (c as Buffer).length;
    }
  })();
  for (let i = 0; i < total / MiB; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32LE(i, 0); // every MiB differs, so a reordering would show
    sent.update(chunk);
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  await reading;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(sampler);

  assert.equal(received, total);
  assert.equal(got.digest('hex'), sent.digest('hex'));
  const mbps = (2 * total) / MiB / secs;
  console.log(
    `# 50 MiB each way in ${secs.toFixed(2)} s: ${mbps.toFixed(0)} MiB/s through the link (both directions counted); peak backlog ${(peakBacklog / MiB).toFixed(2)} MiB`,
  );
  // Two 1 MiB windows, the stream's 64 KiB queues and one write of ours in flight.
  assert.ok(peakBacklog < 4 * MiB, `backlog reached ${peakBacklog} bytes`);

  h.conn.close();
  await h.agentDone;
  await echo.close();
});

test('credit: a reader that does not read stops the sender instead of filling memory', async () => {
  const total = 20 * MiB;
  let serverWrote = 0;
  const src = await listen((s) => {
    const block = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (serverWrote < total) {
        serverWrote += block.length;
        if (!s.write(block)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  const h = await startAgent();
  const stream = await h.conn.connectTcp('127.0.0.1', src.port);
  await new Promise((r) => setTimeout(r, 700)); // nobody reads meanwhile
  const onLink = h.down.bytes;
  assert.ok(onLink < MiB + 256 * 1024, `agent sent ${onLink} bytes to a reader that took nothing`);
  assert.ok(serverWrote < total, 'the remote server should be blocked by TCP backpressure');
  const all = await readAll(stream);
  assert.equal(all.length, total);
  h.conn.close();
  await h.agentDone;
  await src.close();
});

test('credit: a larger stream window (the Kubernetes link) is granted by both ends, and no more is sent', async () => {
  // Two remotes: one that sends 20 MiB and one that reads nothing; neither side's reader reads.
  const total = 20 * MiB;
  const src = await listen((s) => {
    const block = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      for (let sent = 0; sent < total; sent += block.length) if (!s.write(block)) return void s.once('drain', pump);
    };
    pump();
  });
  const sink = await listen((s) => s.pause());
  process.env.MIRRORD_AGENT_STREAM_WINDOW = String(12 * MiB);
  try {
    const h = await startAgent({}, { streamWindow: 12 * MiB });
    const down = await h.conn.connectTcp('127.0.0.1', src.port);
    const up = await h.conn.connectTcp('127.0.0.1', sink.port);
    const block = Buffer.alloc(256 * 1024, 2);
    for (let i = 0; i < 80; i++) up.write(block);
    await new Promise((r) => setTimeout(r, 700));
    // Down: the agent used the 12 MiB the client granted; up: the client used the agent's 12 MiB, and
    // what the sink's socket buffers took (a few MiB: with the 1 MiB window, about 5 MiB got through here).
    assert.ok(h.down.bytes > 11 * MiB && h.down.bytes < 12 * MiB + 256 * 1024, `agent sent ${h.down.bytes} bytes`);
    assert.ok(h.up.bytes > 12 * MiB && h.up.bytes < 19 * MiB, `client sent ${h.up.bytes} bytes`);
    down.destroy();
    up.destroy();
    h.conn.close();
    await h.agentDone;
  } finally {
    delete process.env.MIRRORD_AGENT_STREAM_WINDOW;
    await src.close();
    await sink.close();
  }
});

test('half-close works both ways', async () => {
  // The server answers after our EOF, then sends its own FIN.
  const counter = await listen(
    (s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`got ${n}`));
    },
    { allowHalfOpen: true },
  );
  const h = await startAgent();
  const a = await h.conn.connectTcp('127.0.0.1', counter.port);
  a.end(Buffer.alloc(100_000, 9));
  assert.equal((await readAll(a)).toString(), 'got 100000');

  // The server says hello and sends its FIN first; we keep writing afterwards.
  let late = '';
  const lateDone = new Promise<void>((resolve) => {
    void listen(
      (s) => {
        s.end('hello');
        s.on('data', (c: Buffer) => (late += c.toString()));
        s.on('end', () => resolve());
      },
      { allowHalfOpen: true },
    ).then((srv) => (greeter = srv));
  });
  let greeter: Awaited<ReturnType<typeof listen>> | undefined;
  while (!greeter) await new Promise((r) => setTimeout(r, 5));
  const b = await h.conn.connectTcp('127.0.0.1', greeter.port);
  assert.equal((await readAll(b)).toString(), 'hello');
  b.end('still here');
  await lateDone;
  assert.equal(late, 'still here');

  h.conn.close();
  await h.agentDone;
  await counter.close();
  await greeter.close();
});

test('connection refused is ECONNREFUSED', async () => {
  const tmp = await listen(() => undefined);
  const port = tmp.port;
  await tmp.close();
  const h = await startAgent();
  await assert.rejects(h.conn.connectTcp('127.0.0.1', port), expectCode('ECONNREFUSED'));
  await assert.rejects(h.conn.connectTcp('example.com', 80), expectCode('EINVAL'));
  h.conn.close();
  await h.agentDone;
});

test('a dropped link fails pending requests and open streams with ELINK; the agent closes its sockets', async () => {
  const echo = await listen((s) => s.pipe(s));
  // The lookup stays pending until the link goes.
  const silent = await silentDnsRoot();
  const h = await startAgent(silent.opts);
  const stream = await h.conn.connectTcp('127.0.0.1', echo.port);
  stream.write('ping');
  await once(stream, 'data');
  const streamErr = once(stream, 'error');
  const closed = new Promise<AgentLinkError | undefined>((r) => h.conn.onClose(r));
  const pending = h.conn.request('dns.lookup', { name: 'slow.example', family: 4 });
  await new Promise((r) => setTimeout(r, 50));
  h.cut();
  await assert.rejects(pending, expectCode('ELINK'));
  const [err] = (await streamErr) as [AgentLinkError];
  assert.equal(err.code, 'ELINK');
  assert.equal((await closed)?.code, 'ELINK');
  await h.agentDone;
  await allClosed(echo.sockets);
  await assert.rejects(h.conn.request('env.get', {}), expectCode('ELINK'));
  await echo.close();
  await silent.close();
});

test('close() ends the link; serveAgent closes every socket before it resolves', async () => {
  const echo = await listen((s) => s.pipe(s));
  const h = await startAgent();
  const streams = await Promise.all([1, 2, 3].map(() => h.conn.connectTcp('127.0.0.1', echo.port)));
  while (echo.sockets.size < 3) await new Promise((r) => setTimeout(r, 5));
  const errors = streams.map((s) => once(s, 'error'));
  h.conn.close();
  await h.agentDone;
  await allClosed(echo.sockets);
  for (const e of await Promise.all(errors)) assert.equal((e[0] as AgentLinkError).code, 'ELINK');
  await echo.close();
});

test('a silent peer is declared dead after deadAfterMs', async () => {
  // A fake agent: answers HELLO, then never says anything again.
  const pair = linkPair();
  pair.agent.on('error', () => undefined);
  const reader = new ApFrameReader();
  pair.agent.on('data', (c: Buffer) => {
    if (reader.push(c).some((f) => f.kind === ApKind.HELLO)) pair.agent.write(encodeHelloOk({ version: AP_VERSION, agent: 'fake', targetPid: 1 }));
  });
  const conn = await AgentConnection.connect(pair.client, { token: TOKEN, heartbeatMs: 50, deadAfterMs: 300 });
  const t0 = Date.now();
  await assert.rejects(conn.request('env.get', {}), expectCode('ELINK'));
  const waited = Date.now() - t0;
  assert.ok(waited >= 250 && waited < 600, `declared dead after ${waited} ms`);
  assert.equal(conn.closed, true);
});

test('the agent drops a client that never speaks; heartbeats keep a quiet link alive', async () => {
  const pair = linkPair();
  pair.client.on('error', () => undefined);
  const t0 = Date.now();
  await serveAgent(pair.agent, { token: TOKEN, targetPid: process.pid, deadAfterMs: 200 });
  assert.ok(Date.now() - t0 < 600);

  const h = await startAgent({ heartbeatMs: 50, deadAfterMs: 250 }, { heartbeatMs: 50, deadAfterMs: 250 });
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(h.conn.closed, false);
  await h.conn.request('agent.info', {});
  h.conn.close();
  await h.agentDone;
});

test('a request without an answer times out with ETIMEDOUT', async () => {
  const silent = await silentDnsRoot();
  const h = await startAgent(silent.opts);
  await assert.rejects(h.conn.request('dns.lookup', { name: 'never', family: 4 }, { timeoutMs: 100 }), expectCode('ETIMEDOUT'));
  h.conn.close();
  await h.agentDone;
  await silent.close();
});
