/**
 * The packets one port receives, from the mirrord-sniff helper (agent/capture/sniff.c: an
 * AF_PACKET socket with a kernel port filter and a TPACKET_V3 ring, at idle CPU priority, which
 * Node cannot open), many packets per read, decoded into TCP segments
 * for the reassembler (tcp-reassembly.ts). The helper runs in the agent's network namespace, which
 * is the target's; it ends with the agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../../common/log.js';
import type { TcpSegment } from './tcp-reassembly.js';

export interface PacketSource {
  /** Resolves once packets flow (the first connection after it is seen), rejects if capture cannot start. */
  ready: Promise<void>;
  close(): void;
}

export type OpenCapture = (port: number, onSegment: (s: TcpSegment) => void, onEnd: (reason: string) => void) => PacketSource;

/** Beside the bundle in the image (/opt/mirrord); MIRRORD_SNIFF_PATH elsewhere (tests). */
export function sniffPath(): string {
  if (process.env.MIRRORD_SNIFF_PATH) return process.env.MIRRORD_SNIFF_PATH;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const beside = path.join(here, 'mirrord-sniff');
  return existsSync(beside) ? beside : path.resolve(here, '../../capture/build/mirrord-sniff');
}

function ipv6Text(b: Buffer, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(off + i).toString(16));
  // The shortest form, as Node prints addresses (a 0-run of two or more groups becomes ::).
  const full = groups.join(':');
  const runs = [...full.matchAll(/(?:^|:)0(?::0)+(?::|$)/g)];
  if (runs.length === 0) return full;
  const longest = runs.reduce((a, r) => (r[0].length > a[0].length ? r : a));
  const mapped = full.slice(0, longest.index) + '::' + full.slice(longest.index + longest[0].length);
  return mapped.replace(/^::ffff:([0-9a-f]+):([0-9a-f]+)$/, (_m, hi: string, lo: string) => {
    const h = parseInt(hi, 16);
    const l = parseInt(lo, 16);
    return `${h >> 8}.${h & 255}.${l >> 8}.${l & 255}`;
  });
}

/** One IP packet (IPv4, or IPv6 without extension headers) to a TCP segment; undefined otherwise. */
export function decodePacket(p: Buffer): TcpSegment | undefined {
  if (p.length < 20) return undefined;
  const version = p[0]! >> 4;
  let src: string;
  let dst: string;
  let tcp: number;
  let end: number;
  if (version === 4) {
    const ihl = (p[0]! & 15) * 4;
    if (p[9] !== 6 || ihl < 20) return undefined;
    src = `${p[12]}.${p[13]}.${p[14]}.${p[15]}`;
    dst = `${p[16]}.${p[17]}.${p[18]}.${p[19]}`;
    tcp = ihl;
    end = Math.min(p.length, p.readUInt16BE(2) || p.length);
  } else if (version === 6) {
    if (p.length < 40 || p[6] !== 6) return undefined;
    src = ipv6Text(p, 8);
    dst = ipv6Text(p, 24);
    tcp = 40;
    end = Math.min(p.length, 40 + p.readUInt16BE(4));
  } else return undefined;
  if (end < tcp + 20) return undefined;
  const dataOff = (p[tcp + 12]! >> 4) * 4;
  const flags = p[tcp + 13]!;
  if (dataOff < 20 || tcp + dataOff > end) return undefined;
  return {
    src,
    srcPort: p.readUInt16BE(tcp),
    dst,
    dstPort: p.readUInt16BE(tcp + 2),
    seq: p.readUInt32BE(tcp + 4),
    syn: (flags & 0x02) !== 0,
    fin: (flags & 0x01) !== 0,
    rst: (flags & 0x04) !== 0,
    payload: p.subarray(tcp + dataOff, end),
  };
}

/** Splits the helper's output (4-byte length, packet) into packets; an empty frame is its "ready". */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (this.buf.length - off - 4 < len) break;
      this.onFrame(this.buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    // Frames handed out keep pointing into the old buffer; the rest is copied so it can be freed.
    this.buf = off === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(off));
  }
}

export function openSniffer(log?: Logger, binary = sniffPath()): OpenCapture {
  return (port, onSegment, onEnd) => {
    let child: ChildProcess | undefined;
    let closing = false;
    let stderr = '';
    const ready = new Promise<void>((resolve, reject) => {
      child = spawn(binary, [String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.once('error', (err) => reject(new Error(`cannot start the packet capture (${binary}): ${err.message}`)));
      child.stderr!.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-2000);
        // The ring filled while the target kept the CPU busy: the copies of those packets' connections end.
        for (const m of d.toString().matchAll(/^mirrord-sniff: (dropped \d+ packets.*)$/gm)) log?.info(`packet capture of port ${port}: ${m[1]}`);
      });
      const reader = new FrameReader((frame) => {
        if (frame.length === 0) return resolve();
        const seg = decodePacket(frame);
        if (seg && seg.dstPort === port) onSegment(seg);
      });
      child.stdout!.on('data', (d: Buffer) => reader.push(d));
      child.once('exit', (code, signal) => {
        const why = (stderr.trim().split('\n').pop() ?? '').replace(/^mirrord-sniff: /, '') || `the capture helper exited with ${code ?? signal}`;
        reject(new Error(why));
        if (!closing) log?.info(`packet capture of port ${port} ended: ${why}`);
        onEnd(why);
      });
    });
    ready.catch(() => undefined);
    return {
      ready,
      close() {
        closing = true;
        child?.kill('SIGKILL');
      },
    };
  };
}
