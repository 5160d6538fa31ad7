/**
 * `dns.lookup` as the target would resolve it: the target's own /etc/hosts and /etc/resolv.conf
 * (read through /proc/PID/root, so Docker's and Kubernetes' bind-mounted versions), glibc's order:
 * hosts file first, then DNS with the search list and ndots applied the way res_search does.
 */
import { readFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ApDnsAddress, ApMethods } from '../../common/protocol/agent/index.js';
import type { Logger } from '../../common/log.js';
import { metrics } from './metrics.js';

type LookupParams = ApMethods['dns.lookup']['params'];
type LookupResult = ApMethods['dns.lookup']['result'];

export interface ResolvConf {
  nameservers: string[];
  search: string[];
  ndots: number;
  timeoutMs: number;
  attempts: number;
}

export interface HostsEntry {
  address: string;
  family: 4 | 6;
  names: string[];
}

export interface DnsOptions {
  /** The target's file system root (default /proc/PID/root). */
  root: string;
  /** Port to reach the nameservers on; only tests change it. */
  port?: number;
  log?: Logger;
  /** agent.dns.timeout: each query's timeout, instead of resolv.conf's `options timeout`. */
  timeoutMs?: number;
  /** agent.dns.attempts: tries of each query, instead of resolv.conf's `options attempts`. */
  attempts?: number;
}

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

/** glibc's defaults (resolv.h): timeout 5 s, 2 attempts, ndots 1, at most 3 nameservers. */
export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], ndots: 1, timeoutMs: 5_000, attempts: 2 };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...args] = line.split(/\s+/);
    if (key === 'nameserver' && args[0] && isIP(args[0].split('%')[0] ?? '') && conf.nameservers.length < 3) {
      conf.nameservers.push(args[0]);
    } else if (key === 'search' || key === 'domain') {
      // The last search/domain line wins, as in glibc.
      conf.search = args.filter((d) => d !== '' && d !== '.').map((d) => d.replace(/\.$/, ''));
    } else if (key === 'options') {
      for (const opt of args) {
        const [name, value] = opt.split(':');
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) continue;
        if (name === 'ndots') conf.ndots = Math.min(n, 15);
        else if (name === 'timeout') conf.timeoutMs = Math.max(1, Math.min(n, 30)) * 1_000;
        else if (name === 'attempts') conf.attempts = Math.max(1, Math.min(n, 5));
      }
    }
  }
  // No nameserver line means the local one, as in glibc.
  if (conf.nameservers.length === 0) conf.nameservers.push('127.0.0.1');
  return conf;
}

export function parseHosts(text: string): HostsEntry[] {
  const entries: HostsEntry[] = [];
  for (const raw of text.split('\n')) {
    const [address, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/);
    const family = address ? isIP(address) : 0;
    if (!address || (family !== 4 && family !== 6) || names.length === 0) continue;
    entries.push({ address, family, names: names.map((n) => n.toLowerCase()) });
  }
  return entries;
}

/** The names res_search would ask for, in order. */
export function searchCandidates(name: string, conf: Pick<ResolvConf, 'search' | 'ndots'>): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const qualified = conf.search.map((d) => `${name}.${d}`);
  const dots = name.split('.').length - 1;
  return dots >= conf.ndots ? [name, ...qualified] : [...qualified, name];
}

function fromHosts(entries: HostsEntry[], name: string, families: (4 | 6)[]): LookupResult | undefined {
  const wanted = name.toLowerCase();
  const addresses: ApDnsAddress[] = [];
  let canonname = '';
  for (const e of entries) {
    if (!e.names.includes(wanted) || !families.includes(e.family)) continue;
    if (!canonname) canonname = e.names[0] ?? wanted;
    if (!addresses.some((a) => a.address === e.address)) addresses.push({ address: e.address, family: e.family });
  }
  // glibc lists IPv4 first for AF_UNSPEC when no gai.conf says otherwise on a v4-only host.
  addresses.sort((a, b) => a.family - b.family);
  return addresses.length ? { addresses, canonname } : undefined;
}

type Outcome = { addresses: ApDnsAddress[] } | { fail: 'NOTFOUND' | 'NODATA' | 'SERVFAIL' | 'AGAIN'; detail: string };

async function queryName(resolver: Resolver, name: string, families: (4 | 6)[]): Promise<Outcome> {
  const settled = await Promise.allSettled(
    families.map(async (f) => {
      const list = f === 4 ? await resolver.resolve4(name) : await resolver.resolve6(name);
      return list.map((address): ApDnsAddress => ({ address, family: f }));
    }),
  );
  const addresses = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
  if (addresses.length) return { addresses };
  const codes = settled.map((s) => (s.status === 'rejected' ? String((s.reason as { code?: unknown }).code) : 'ENODATA'));
  const detail = codes.join('/');
  // As res_search: an unreachable server ends the search; NXDOMAIN, NODATA and SERVFAIL try the next name.
  if (codes.some((c) => !['ENOTFOUND', 'ENODATA', 'ESERVFAIL'].includes(c))) return { fail: 'AGAIN', detail };
  if (codes.includes('ENODATA')) return { fail: 'NODATA', detail };
  if (codes.includes('ESERVFAIL')) return { fail: 'SERVFAIL', detail };
  return { fail: 'NOTFOUND', detail };
}

export class DnsService {
  private readonly active = new Set<Resolver>();

  constructor(private readonly opts: DnsOptions) {}

  async lookup(p: LookupParams): Promise<LookupResult> {
    try {
      const r = await this.resolve(p);
      metrics.dnsQueries.inc({ result: 'ok' });
      return r;
    } catch (err) {
      metrics.dnsQueries.inc({ result: String((err as { code?: unknown }).code ?? 'error') });
      throw err;
    }
  }

  private async resolve(p: LookupParams): Promise<LookupResult> {
    const families: (4 | 6)[] = p.family === 0 ? [4, 6] : [p.family];
    const bare = p.name.replace(/\.$/, '');
    if (bare === '') throw codeError('ENOTFOUND', `${p.name}: no such name`);
    const literal = isIP(bare);
    if (literal === 4 || literal === 6) {
      if (!families.includes(literal)) throw codeError('ENODATA', `${bare} is not an IPv${families[0]} address`);
      return { addresses: [{ address: bare, family: literal }], canonname: bare };
    }

    const hosts = fromHosts(parseHosts(await this.readEtc('hosts')), bare, families);
    if (hosts) return hosts;
    if (bare.toLowerCase() === 'localhost') {
      // A target without a hosts file still has a loopback; never ask a nameserver for it.
      const all: ApDnsAddress[] = [
        { address: '127.0.0.1', family: 4 },
        { address: '::1', family: 6 },
      ];
      return { addresses: all.filter((a) => families.includes(a.family)), canonname: 'localhost' };
    }

    const conf = parseResolvConf(await this.readEtc('resolv.conf'));
    const timeout = this.opts.timeoutMs ?? conf.timeoutMs;
    const tries = this.opts.attempts ?? conf.attempts;
    const resolver = new Resolver({ timeout, tries });
    resolver.setServers(conf.nameservers.map((ns) => this.serverAddress(ns)));
    this.active.add(resolver);
    try {
      let nodata = false;
      let servfail = false;
      for (const candidate of searchCandidates(p.name, conf)) {
        const r = await queryName(resolver, candidate, families);
        this.opts.log?.debug(`dns ${candidate} (${p.family}): ${'addresses' in r ? r.addresses.length + ' address(es)' : r.detail}`);
        if ('addresses' in r) return { addresses: r.addresses, canonname: candidate };
        if (r.fail === 'AGAIN') throw codeError('EAI_AGAIN', `${p.name}: name server failure (${r.detail})`);
        if (r.fail === 'NODATA') nodata = true;
        if (r.fail === 'SERVFAIL') servfail = true;
      }
      if (nodata) throw codeError('ENODATA', `${p.name}: no ${families.map((f) => `IPv${f}`).join('/')} address`);
      if (servfail) throw codeError('EAI_AGAIN', `${p.name}: name server failure`);
      throw codeError('ENOTFOUND', `${p.name}: no such name`);
    } finally {
      this.active.delete(resolver);
    }
  }

  /** Abandon every query in flight (their lookups fail with EAI_AGAIN). */
  cancelAll(): void {
    for (const r of this.active) r.cancel();
    this.active.clear();
  }

  private async readEtc(file: string): Promise<string> {
    try {
      return await readFile(`${this.opts.root}/etc/${file}`, 'utf8');
    } catch (err) {
      this.opts.log?.debug(`cannot read the target's /etc/${file}: ${(err as Error).message}`);
      return '';
    }
  }

  private serverAddress(ns: string): string {
    const port = this.opts.port ?? 53;
    return isIP(ns.split('%')[0] ?? '') === 6 ? `[${ns}]:${port}` : `${ns}:${port}`;
  }
}
