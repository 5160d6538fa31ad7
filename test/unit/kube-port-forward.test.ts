import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { WebSocketServer } from 'ws';
import { connectOnce } from '../../src/platforms/kubernetes/port-forward.js';

const PORT = 47000;
const portBytes = (ch: number) => Buffer.from([ch, PORT & 0xff, PORT >> 8]);

/**
 * A stand-in for the kubelet's port-forward endpoint (channel protocol v4): the behaviours we saw from
 * the real one, including the port-number frame arriving after the first data frame.
 */
describe('port-forward stream (kubelet framing)', () => {
  let server: http.Server;
  let kc: k8s.KubeConfig;
  let mode: 'banner-first' | 'prefix-first' | 'refused' | 'forbidden' = 'prefix-first';
  const received: Buffer[] = [];
  /** The client's bytes as they came off the socket (frames, not messages), and its extension offer. */
  const raw: Buffer[] = [];
  let offered: string | undefined;

  before(async () => {
    server = http.createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', message: 'pods "x" is forbidden: cannot create resource "pods/portforward"' }));
    });
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      if (mode === 'forbidden') {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\r\n{"message":"pods/portforward is forbidden"}');
        return;
      }
      offered = req.headers['sec-websocket-extensions'];
      socket.on('data', (d: Buffer) => raw.push(d));
      wss.handleUpgrade(req, socket as net.Socket, head, (ws) => {
        assert.equal(ws.protocol, 'v4.channel.k8s.io');
        const banner = Buffer.concat([Buffer.from([0]), Buffer.from('MIRRORD-AGENT 1\n')]);
        if (mode === 'refused') {
          ws.send(portBytes(0));
          ws.send(portBytes(1));
          ws.send(Buffer.concat([Buffer.from([1]), Buffer.from('failed to connect to localhost:47000: connection refused')]));
          ws.close(1000);
          return;
        }
        if (mode === 'banner-first') ws.send(banner);
        ws.send(portBytes(0));
        ws.send(portBytes(1));
        if (mode === 'prefix-first') ws.send(banner);
        ws.on('message', (d: Buffer) => {
          received.push(d);
          ws.send(d); // echo channel 0 data back
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
      currentContext: 'c',
    });
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  for (const m of ['prefix-first', 'banner-first'] as const) {
    it(`strips the banner and the port numbers (${m}) and carries data both ways`, async () => {
      mode = m;
      const s = await connectOnce(kc, 'ns', 'pod', PORT);
      const got = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
      s.write('ping-through');
      assert.equal(await got, 'ping-through');
      s.destroy();
    });
  }

  it('sends writes made together as few channel-0 messages of at most 1 MiB, in order', async () => {
    mode = 'prefix-first';
    received.length = 0;
    const s = await connectOnce(kc, 'ns', 'pod', PORT);
    const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(i % 2 ? 100_000 : 9, i));
    s.cork();
    for (const c of chunks) s.write(c);
    s.uncork();
    const want = Buffer.concat(chunks);
    let echoed = 0;
    await new Promise<void>((r) =>
      s.on('data', (d: Buffer) => {
        echoed += d.length;
        if (echoed >= want.length) r();
      }),
    );
    assert.ok(received.length >= 2 && received.length < chunks.length, `${received.length} messages`);
    for (const m of received) assert.ok(m[0] === 0 && m.length <= 1024 * 1024 + 1, `a message of ${m.length} bytes on channel ${m[0]}`);
    assert.ok(Buffer.concat(received.map((m) => m.subarray(1))).equals(want));
    s.destroy();
  });

  it('sends its bytes as they are (an all-zero masking key) and offers no compression', async () => {
    mode = 'prefix-first';
    raw.length = 0;
    const s = await connectOnce(kc, 'ns', 'pod', PORT);
    const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));
    const echoed = new Promise<void>((r) => s.on('data', () => r()));
    s.write(payload);
    await echoed;
    const bytes = Buffer.concat(raw);
    // Header: FIN + binary, MASK + 126 (16-bit length 5001), the key (4 zero bytes), then channel 0 and the payload.
    const frame = Buffer.concat([Buffer.from([0x82, 0x80 | 126, 5001 >> 8, 5001 & 0xff, 0, 0, 0, 0, 0]), payload]);
    assert.ok(bytes.includes(frame), 'the frame carries a zero key and the payload unchanged');
    assert.equal(offered, undefined);
    s.destroy();
  });

  it("reports the kubelet's error when nothing listens yet", async () => {
    mode = 'refused';
    await assert.rejects(connectOnce(kc, 'ns', 'pod', PORT), /port-forward: failed to connect to localhost:47000: connection refused/);
  });

  it('gives the HTTP status of a refused upgrade (RBAC)', async () => {
    mode = 'forbidden';
    await assert.rejects(connectOnce(kc, 'ns', 'pod', PORT), (e: Error & { statusCode?: number }) => e.statusCode === 403 && /forbidden/.test(e.message));
  });
});
