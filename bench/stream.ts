/**
 * `npm run bench:stream`: the AP link's own cost, without Docker. The same client program
 * (bench/tcp-client.mjs) and sink, each in a process of its own, exchange the same bytes through
 * relays that run in this process, in the same run:
 *
 * - direct: client to sink, no relay (the ceiling);
 * - plain pipe: two relays joined by a unix socket, each a Node pipe() (what any relay costs);
 * - link over a unix socket / over TCP loopback: the intproxy's side (AgentConnection, fed by a local
 *   TCP listener as the intproxy is) and the agent's (serveAgent), joined by one socket.
 *
 * CPU seconds per GiB are this process's (process.cpuUsage), so they count the relays and nothing
 * else; "link code" is the link's figure minus the plain pipe's, which moves the same bytes over the
 * same number of sockets. Peak buffered is the most bytes ever waiting in the link socket's write
 * queues, sampled every 5 ms: flow control must keep it bounded whatever the transfer size.
 * BENCH_MIB (256) and BENCH_ROUNDS (3) tune it; the rounds take the paths in turn, and each figure
 * is the best of its rounds (most MiB/s, least CPU: the round least disturbed by other load).
 *
 * Then the Docker attach demultiplexing alone (every byte of an agent link on a Docker engine goes
 * through it): docker-modem's demuxStream against ours (src/platforms/docker/demux.ts), fed the
 * same frames in the same reads, CPU seconds per GiB of this process.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { AgentConnection } from '../src/agent-link/connection.js';
import { serveAgent } from '../agent/src/server.js';
import { PassThrough, Writable } from 'node:stream';
import Modem from 'docker-modem';
import { demuxAttach } from '../src/platforms/docker/demux.js';

const client = fileURLToPath(new URL('./tcp-client.mjs', import.meta.url));
const MIB = Number(process.env.BENCH_MIB ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOKEN = 'bench-stream-token';

// The sink speaks tcp-client.mjs's protocol (tcp-server.mjs's, on a port of our choosing).
const SINK = `
import net from 'node:net';
const srv = net.createServer({ noDelay: true }, (s) => {
  let head = Buffer.alloc(0), mode, want = 0, got = 0;
  s.on('data', (d) => {
    if (!mode) {
      head = Buffer.concat([head, d]);
      if (head.length < 9) return;
      mode = String.fromCharCode(head[0]);
      want = Number(head.subarray(1, 9).toString()) * 1024 * 1024;
      d = head.subarray(9);
      if (mode === 'D') {
        const chunk = Buffer.alloc(256 * 1024, 9);
        let left = want / chunk.length;
        const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) return s.once('drain', pump); } };
        pump();
      }
    }
    if (mode === 'U') { got += d.length; if (got >= want) s.write('ok'); }
  });
  s.on('error', () => undefined);
});
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
`;

interface Relay {
  /** Where the client connects. */
  port: number;
  /** Sockets whose write queue is sampled for the peak. */
  watched: () => net.Socket[];
  close: () => Promise<void>;
}

async function listenTcp(onConn: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ noDelay: true }, onConn);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
const closeServer = (s: net.Server) => new Promise<void>((r) => s.close(() => r()));

function joinBoth(a: net.Socket | NodeJS.ReadWriteStream, b: net.Socket | NodeJS.ReadWriteStream): void {
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  a.pipe(b);
  b.pipe(a);
}

/** Two pipe() relays joined by a unix socket: the same hops as the link, without framing. */
async function plainRelay(sinkPort: number, dir: string): Promise<Relay> {
  const open = new Set<net.Socket>();
  const track = (s: net.Socket) => (open.add(s), s.on('close', () => open.delete(s)), s);
  const unixPath = path.join(dir, 'plain.sock');
  const far = net.createServer((s) => joinBoth(track(s), track(net.connect({ host: '127.0.0.1', port: sinkPort, noDelay: true }))));
  far.listen(unixPath);
  await once(far, 'listening');
  const near = await listenTcp((s) => joinBoth(track(s), track(net.connect(unixPath))));
  return {
    port: portOf(near),
    watched: () => [...open],
    close: async () => {
      for (const s of open) s.destroy();
      await Promise.all([closeServer(near), closeServer(far)]);
    },
  };
}

/** AgentConnection and serveAgent over one socket (unix or TCP), fed by a local TCP listener. */
async function linkRelay(sinkPort: number, over: 'unix' | 'tcp', dir: string): Promise<Relay> {
  const linkSockets: net.Socket[] = [];
  const agentSide = net.createServer((s) => {
    linkSockets.push(s);
    void serveAgent(s, { token: TOKEN, targetPid: process.pid });
  });
  if (over === 'unix') agentSide.listen(path.join(dir, 'link.sock'));
  else agentSide.listen(0, '127.0.0.1');
  await once(agentSide, 'listening');
  const linkSock = over === 'unix' ? net.connect(path.join(dir, 'link.sock')) : net.connect({ host: '127.0.0.1', port: portOf(agentSide), noDelay: true });
  await once(linkSock, 'connect');
  linkSockets.push(linkSock);
  const conn = await AgentConnection.connect(linkSock, { token: TOKEN });
  const front = await listenTcp((s) => {
    s.on('error', () => undefined);
    s.pause();
    conn.connectTcp('127.0.0.1', sinkPort).then(
      (stream) => joinBoth(s, stream),
      () => s.destroy(),
    );
  });
  return {
    port: portOf(front),
    watched: () => linkSockets,
    close: async () => {
      conn.close();
      await closeServer(front);
      for (const s of linkSockets) s.destroy();
      await closeServer(agentSide);
    },
  };
}

function runClient(mode: 'upload' | 'download', port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [client, mode, '127.0.0.1', String(port), String(MIB)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`tcp-client ${mode} exited with ${code}`));
      resolve((JSON.parse(out) as { mbps: number }).mbps);
    });
  });
}

interface Figure {
  mbps: number;
  cpuPerGiB: number;
  peakBuffered: number;
}

/** One transfer; CPU is this process's over it, so the relays' alone. */
async function once1(mode: 'upload' | 'download', relay: Relay | undefined, directPort: number): Promise<Figure> {
  let peak = 0;
  const sampler = setInterval(() => {
    const n = (relay?.watched() ?? []).reduce((sum, s) => sum + s.writableLength, 0);
    if (n > peak) peak = n;
  }, 5);
  const cpu0 = process.cpuUsage();
  const mbps = await runClient(mode, relay?.port ?? directPort);
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  return { mbps, cpuPerGiB: (cpu.user + cpu.system) / 1e6 / (MIB / 1024), peakBuffered: peak };
}

/** The best of the rounds: highest throughput, least CPU (the least disturbed by other load), highest peak. */
function best(figs: Figure[]): Figure {
  return {
    mbps: Math.max(...figs.map((f) => f.mbps)),
    cpuPerGiB: Math.min(...figs.map((f) => f.cpuPerGiB)),
    peakBuffered: Math.max(...figs.map((f) => f.peakBuffered)),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-stream-'));
  const sink = spawn(process.execPath, ['--input-type=module', '-e', SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(sink.stdout, 'data')) as [Buffer];
    const sinkPort = Number(line.toString().trim());
    const relays: Array<[string, () => Promise<Relay | undefined>]> = [
      ['direct (no relay)', async () => undefined],
      ['plain pipe, unix socket', () => plainRelay(sinkPort, dir)],
      ['link over a unix socket', () => linkRelay(sinkPort, 'unix', dir)],
      ['link over TCP loopback', () => linkRelay(sinkPort, 'tcp', dir)],
    ];
    const rows: Array<[string, Figure, Figure]> = [];
    const made: Array<[string, Relay | undefined]> = [];
    try {
      for (const [name, make] of relays) made.push([name, await make()]);
      // Rounds go through every path in turn, so a swing of the machine's load hits them all alike.
      const figs = made.map(() => ({ up: [] as Figure[], down: [] as Figure[] }));
      for (let r = 0; r < ROUNDS; r++) {
        for (const [i, [, relay]] of made.entries()) {
          figs[i]!.up.push(await once1('upload', relay, sinkPort));
          figs[i]!.down.push(await once1('download', relay, sinkPort));
        }
      }
      rows.push(...made.map(([name], i): [string, Figure, Figure] => [name, best(figs[i]!.up), best(figs[i]!.down)]));
    } finally {
      for (const [, relay] of made) await relay?.close();
    }
    const plain = rows[1]!;
    const direct = rows[0]!;
    process.stdout.write(
      `\nAP link against a plain pipe (${MIB} MiB, best of ${ROUNDS} interleaved rounds, same run; CPU = the relays' process, least of the rounds)\n`,
    );
    process.stdout.write(
      `${'path'.padEnd(26)} ${'up MiB/s'.padStart(9)} ${'down MiB/s'.padStart(10)} ${'ratio'.padStart(10)} ${'CPU s/GiB'.padStart(10)} ${'link code'.padStart(10)} ${'peak queued'.padStart(12)}\n`,
    );
    for (const [name, up, down] of rows) {
      const cpu = (up.cpuPerGiB + down.cpuPerGiB) / 2;
      const plainCpu = (plain[1].cpuPerGiB + plain[2].cpuPerGiB) / 2;
      const linkCode = name.startsWith('link') ? (cpu - plainCpu).toFixed(2) : '';
      const ratio = `${(up.mbps / direct[1].mbps).toFixed(2)}/${(down.mbps / direct[2].mbps).toFixed(2)}`;
      const peak = name.startsWith('direct') ? '' : `${Math.round(Math.max(up.peakBuffered, down.peakBuffered) / 1024)} KiB`;
      process.stdout.write(
        `${name.padEnd(26)} ${up.mbps.toFixed(0).padStart(9)} ${down.mbps.toFixed(0).padStart(10)} ${ratio.padStart(10)} ${cpu.toFixed(2).padStart(10)} ${linkCode.padStart(10)} ${peak.padStart(12)}\n`,
      );
    }
  } finally {
    sink.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** CPU s/GiB of one demultiplexer: 256 KiB frames (the agent's writes) in 64 KiB reads (the socket's). */
async function demuxCost(demux: (src: PassThrough, out: Writable, err: Writable) => void): Promise<number> {
  const payload = Buffer.alloc(256 * 1024, 5);
  const header = Buffer.alloc(8);
  header[0] = 1;
  header.writeUInt32BE(payload.length, 4);
  const wire = Buffer.concat([header, payload]);
  const reads: Buffer[] = [];
  for (let at = 0; at < wire.length; at += 64 * 1024) reads.push(wire.subarray(at, at + 64 * 1024));
  const src = new PassThrough();
  let got = 0;
  const sinkOf = () => new Writable({ write: (c: Buffer, _e, cb) => ((got += c.length), cb()) });
  demux(src, sinkOf(), sinkOf());
  const frames = Math.max(1, Math.round((MIB * 1024 * 1024) / payload.length));
  const t0 = process.cpuUsage();
  for (let i = 0; i < frames; i++) {
    for (const r of reads) src.write(r);
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setImmediate(r));
  const u = process.cpuUsage(t0);
  if (got !== frames * payload.length) throw new Error(`demux lost bytes: ${got} of ${frames * payload.length}`);
  return (u.user + u.system) / 1e6 / ((frames * payload.length) / 2 ** 30);
}

async function demuxRows(): Promise<void> {
  const modem = new Modem();
  const paths: Array<[string, (src: PassThrough, out: Writable, err: Writable) => void]> = [
    ["docker-modem's demuxStream", (src, out, err) => modem.demuxStream(src, out, err)],
    ['ours (views of the reads)', demuxAttach],
  ];
  const cpu = paths.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) for (const [i, [, d]] of paths.entries()) cpu[i] = Math.min(cpu[i]!, await demuxCost(d));
  process.stdout.write(`\nDocker attach demultiplexing (${MIB} MiB of 256 KiB frames in 64 KiB reads, least of ${ROUNDS} rounds)\n`);
  for (const [i, [name]] of paths.entries()) process.stdout.write(`${name.padEnd(30)} ${cpu[i]!.toFixed(3).padStart(7)} CPU s/GiB\n`);
}

await main();
await demuxRows();
process.exit(0);
