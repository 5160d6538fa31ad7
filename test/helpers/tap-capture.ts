/**
 * A stand-in for the agent's packet capture in-process (no raw socket without root): a TCP proxy in
 * front of the application turns what each client sends into the segments a capture would see,
 * deliberately awkward (each chunk split, its second half first, then the whole chunk again as a
 * retransmission), and feeds them to the PortTable's capture of the application's port.
 */
import net from 'node:net';
import type { OpenCapture } from '../../agent/src/incoming/sniff.js';
import type { TcpSegment } from '../../agent/src/incoming/tcp-reassembly.js';

export function tapCapture() {
  const feeds = new Map<number, (s: TcpSegment) => void>();
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const open: OpenCapture = (port, onSegment) => {
    feeds.set(port, onSegment);
    return { ready: Promise.resolve(), close: () => void feeds.delete(port) };
  };

  /**
   * A port that reaches `to` (the application, or the agent's listener when the port is also
   * stolen, as the REDIRECT would), its clients' bytes also "captured" as `port`'s.
   */
  async function tap(to: number, port = to): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      sockets.add(client);
      client.once('close', () => sockets.delete(client));
      const app = net.connect(to, '127.0.0.1');
      sockets.add(app);
      app.once('close', () => sockets.delete(app));
      const base = { src: '127.0.0.1', srcPort: client.remotePort ?? 0, dst: '127.0.0.1', dstPort: port, syn: false, fin: false, rst: false };
      // An ISN near the end of sequence space: the copy must survive the wrap.
      let seq = 0xfffffff0;
      const feed = (s: Partial<TcpSegment>) => feeds.get(port)?.({ ...base, seq, payload: Buffer.alloc(0), ...s });
      feed({ syn: true });
      seq = (seq + 1) >>> 0;
      client.on('data', (chunk: Buffer) => {
        const half = chunk.length >> 1;
        feed({ seq: (seq + half) >>> 0, payload: chunk.subarray(half) });
        feed({ payload: chunk.subarray(0, half) });
        feed({ payload: chunk });
        seq = (seq + chunk.length) >>> 0;
        app.write(chunk);
      });
      client.on('end', () => {
        feed({ fin: true });
        app.end();
      });
      app.pipe(client);
      app.on('error', () => client.destroy());
      client.on('error', () => app.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    servers.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  function close(): void {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
  }

  return { open, tap, close };
}
