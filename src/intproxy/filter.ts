import net from 'node:net';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * Outgoing and DNS filters: entries `[tcp://|udp://][name|ip|cidr][:port]`, as in mirrord.
 * A name matches exactly (case-insensitively), or as a suffix when written with a leading dot.
 */
export interface FilterEntry {
  proto?: 'tcp' | 'udp';
  host?: { kind: 'any' } | { kind: 'name'; name: string } | { kind: 'net'; list: net.BlockList };
  port?: number;
  text: string;
}

export type Route = 'remote' | 'local';

export function parseFilterEntry(text: string, where: string): FilterEntry {
  let rest = text.trim();
  let proto: FilterEntry['proto'];
  const protoMatch = /^(tcp|udp):\/\//i.exec(rest);
  if (protoMatch) {
    proto = protoMatch[1]!.toLowerCase() as 'tcp' | 'udp';
    rest = rest.slice(protoMatch[0].length);
  }
  let host = rest;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?:\/(\d+))?(?::(\d+))?$/.exec(rest);
  if (bracketed) {
    host = bracketed[1]! + (bracketed[2] ? `/${bracketed[2]}` : '');
    if (bracketed[3]) port = Number(bracketed[3]);
  } else if (rest.split(':').length === 2) {
    const [h, p] = rest.split(':');
    host = h!;
    port = Number(p);
  } else if (/^:\d+$/.test(rest)) {
    host = '';
    port = Number(rest.slice(1));
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw bad(text, where, 'port must be 1-65535');
  }
  return { proto, port, text, host: parseHost(host, text, where) };
}

function parseHost(host: string, text: string, where: string): FilterEntry['host'] {
  if (host === '' || host === '*') return { kind: 'any' };
  const [addr, prefix] = host.split('/');
  const family = net.isIP(addr ?? '');
  if (family) {
    const list = new net.BlockList();
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix !== undefined) {
      const bits = Number(prefix);
      if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) throw bad(text, where, 'bad CIDR prefix');
      list.addSubnet(addr!, bits, type);
    } else {
      list.addAddress(addr!, type);
    }
    return { kind: 'net', list };
  }
  if (prefix !== undefined || !/^\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(host)) {
    throw bad(text, where, 'expected a host name, IP address or CIDR');
  }
  return { kind: 'name', name: host.toLowerCase().replace(/\.$/, '') };
}

function bad(text: string, where: string, why: string): MirrordError {
  return new MirrordError(`${where}: invalid entry "${text}" (${why})`, ExitCode.Config, 'Entries look like tcp://name:port, 10.0.0.0/8, :5432');
}

function nameMatches(pattern: string, name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return pattern.startsWith('.') ? n.endsWith(pattern) || n === pattern.slice(1) : n === pattern;
}

export interface Destination {
  proto: 'tcp' | 'udp';
  ip?: string;
  port?: number;
  /** Names this IP was resolved from (remote DNS answers), or the name being resolved. */
  names: string[];
}

function entryMatches(e: FilterEntry, d: Destination): boolean {
  if (e.proto && e.proto !== d.proto) return false;
  if (e.port !== undefined && d.port !== undefined && e.port !== d.port) return false;
  const h = e.host ?? { kind: 'any' };
  if (h.kind === 'any') return true;
  if (h.kind === 'name') return d.names.some((n) => nameMatches(h.name, n));
  if (!d.ip) return false;
  const family = net.isIP(d.ip);
  return family !== 0 && h.list.check(d.ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** A compiled `{remote|local}` filter; with neither list everything is remote. */
export class TrafficFilter {
  private constructor(
    private readonly mode: 'remote' | 'local' | 'none',
    private readonly entries: FilterEntry[],
  ) {}

  static compile(filter: { remote?: string[]; local?: string[] } | undefined, where: string): TrafficFilter {
    if (filter?.remote)
      return new TrafficFilter(
        'remote',
        filter.remote.map((t, i) => parseFilterEntry(t, `${where}.remote[${i}]`)),
      );
    if (filter?.local)
      return new TrafficFilter(
        'local',
        filter.local.map((t, i) => parseFilterEntry(t, `${where}.local[${i}]`)),
      );
    return new TrafficFilter('none', []);
  }

  route(d: Destination): Route {
    if (this.mode === 'none') return 'remote';
    const hit = this.entries.some((e) => entryMatches(e, d));
    if (this.mode === 'remote') return hit ? 'remote' : 'local';
    return hit ? 'local' : 'remote';
  }
}

export function isLoopback(ip: string): boolean {
  return ip === '::1' || /^127\./.test(ip) || /^::ffff:127\./i.test(ip);
}
