/**
 * In-memory AP links for tests: the real serveAgent on one end, AgentConnection on the other, and
 * byte counters on each direction so tests can see what crossed the link.
 */
import { Duplex, Transform } from 'node:stream';
import dgram from 'node:dgram';
import { AgentConnection, type AgentConnectionOptions } from '../../src/agent-link/connection.js';
import { serveAgent, type ServeAgentOptions } from '../../agent/src/server.js';

export class CountingPipe extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

export interface LinkPair {
  client: Duplex;
  agent: Duplex;
  /** Bytes sent by the client / by the agent. */
  up: CountingPipe;
  down: CountingPipe;
  /** Cut the link as a network failure would: both ends see it die. */
  cut(): void;
}

export function linkPair(): LinkPair {
  const up = new CountingPipe();
  const down = new CountingPipe();
  const client = Duplex.from({ readable: down, writable: up });
  const agent = Duplex.from({ readable: up, writable: down });
  return {
    client,
    agent,
    up,
    down,
    cut: () => {
      client.destroy();
      agent.destroy();
    },
  };
}

export const TOKEN = 'test-token-0123456789';

export interface Harness extends LinkPair {
  conn: AgentConnection;
  agentDone: Promise<void>;
}

export async function startAgent(agentOpts: Partial<ServeAgentOptions> = {}, clientOpts: Partial<AgentConnectionOptions> = {}): Promise<Harness> {
  const pair = linkPair();
  const agentDone = serveAgent(pair.agent, { token: TOKEN, targetPid: process.pid, ...agentOpts });
  const conn = await AgentConnection.connect(pair.client, { token: TOKEN, ...clientOpts });
  return { ...pair, conn, agentDone };
}

// ---- a tiny authoritative DNS server on 127.0.0.1 (UDP) ----

export interface DnsRecords {
  [name: string]: { A?: string[]; AAAA?: string[]; rcode?: number };
}

function ipv6Bytes(addr: string): Buffer {
  const [head = '', tail] = addr.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export interface FakeDns {
  port: number;
  /** "name TYPE" for every query received, in order. */
  queries: string[];
  close(): Promise<void>;
}

/** `silent` answers nothing, to test timeouts and dropped links. */
export async function startFakeDns(records: DnsRecords, silent = false): Promise<FakeDns> {
  const sock = dgram.createSocket('udp4');
  const queries: string[] = [];
  sock.on('message', (msg, rinfo) => {
    let off = 12;
    const labels: string[] = [];
    while (off < msg.length && msg[off] !== 0) {
      const n = msg[off]!;
      labels.push(msg.subarray(off + 1, off + 1 + n).toString('ascii'));
      off += n + 1;
    }
    const qEnd = off + 5; // zero label, qtype, qclass
    const qtype = msg.readUInt16BE(off + 1);
    const name = labels.join('.').toLowerCase();
    const typeName = qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : String(qtype);
    queries.push(`${name} ${typeName}`);
    if (silent) return;
    const rec = records[name];
    const rcode = rec ? (rec.rcode ?? 0) : 3;
    const addrs = rcode === 0 && rec ? (qtype === 1 ? (rec.A ?? []) : qtype === 28 ? (rec.AAAA ?? []) : []) : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8180 | rcode, 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addrs.length, 6);
    const answers = addrs.map((a) => {
      const rdata = qtype === 1 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(30, 6);
      rr.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([rr, rdata]);
    });
    sock.send(Buffer.concat([header, msg.subarray(12, qEnd), ...answers]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return {
    port: sock.address().port,
    queries,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
