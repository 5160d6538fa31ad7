/**
 * DNS on the intproxy side: a layer's getaddrinfo() is answered by the agent (dns.lookup, in the
 * target's resolver) unless remote DNS is off or the DNS filter keeps the name local. The answers
 * are remembered by IP (NameCache), so an outgoing filter written with names matches a connect()
 * to one of the addresses the name resolved to.
 */
import { lookup as localLookup } from 'node:dns/promises';
import type { Logger } from '../../common/log.js';
import { LpStatus, type LpRequest } from '../../common/protocol/layer/index.js';
import type { ResolvedFeatures } from '../config/schema.js';
import type { RequestAgentPort } from './agent-port.js';
import { EAI, dnsStatus } from './errno.js';
import { TrafficFilter } from './filter.js';

/** How many IPs the name cache remembers (least recently used go first). */
export const NAME_CACHE_MAX_IPS = 4096;
/** How many names one IP keeps (a CDN address can stand for thousands; the last used stay). */
export const NAME_CACHE_MAX_NAMES_PER_IP = 16;

/**
 * IP -> the names that resolved to it, bounded both ways: at most `maxIps` IPs and `maxNamesPerIp`
 * names each, least recently used (resolved or connected to) evicted first. A program resolving
 * an unbounded stream of names costs bounded memory; a name evicted before its connect() only
 * means a name-written outgoing filter no longer matches that IP (IP and CIDR entries still do).
 */
export class NameCache {
  /** Map order is recency: the first key is the least recently used (so is each Set's first name). */
  private readonly byIp = new Map<string, Set<string>>();

  constructor(
    readonly maxIps = NAME_CACHE_MAX_IPS,
    readonly maxNamesPerIp = NAME_CACHE_MAX_NAMES_PER_IP,
  ) {
    if (!(maxIps >= 1 && maxNamesPerIp >= 1)) throw new RangeError('NameCache caps must be at least 1');
  }

  get size(): number {
    return this.byIp.size;
  }

  /** `name` resolved to `ip`. */
  add(ip: string, name: string): void {
    const names = this.byIp.get(ip) ?? new Set<string>();
    this.byIp.delete(ip);
    this.byIp.set(ip, names);
    const n = name.toLowerCase();
    names.delete(n);
    names.add(n);
    for (const old of names) {
      if (names.size <= this.maxNamesPerIp) break;
      names.delete(old);
    }
    for (const old of this.byIp.keys()) {
      if (this.byIp.size <= this.maxIps) break;
      this.byIp.delete(old);
    }
  }

  /** The names known for `ip` (oldest first); a hit counts as a use. */
  namesOf(ip: string): string[] {
    const names = this.byIp.get(ip);
    if (!names) return [];
    this.byIp.delete(ip);
    this.byIp.set(ip, names);
    return [...names];
  }
}

export interface DnsStats {
  lookups: number;
}

type Lookup = Extract<LpRequest, { kind: 'getaddrinfo' }>;
type LookupAnswer = { status: number; addresses: { family: 4 | 6; address: string }[]; canonname: string };

export class DnsResolver {
  private readonly filter: TrafficFilter;

  constructor(
    private readonly agent: RequestAgentPort,
    private readonly features: Pick<ResolvedFeatures, 'dns' | 'outgoing'>,
    private readonly log: Logger,
    private readonly stats: DnsStats,
    readonly names = new NameCache(),
  ) {
    this.filter = TrafficFilter.compile(features.dns.filter, 'feature.network.dns.filter');
  }

  async lookup(req: Lookup): Promise<LookupAnswer> {
    const none = { addresses: [] as { family: 4 | 6; address: string }[], canonname: '' };
    const dns = this.features.dns;
    if (!dns.enabled || this.filter.route({ proto: 'udp', names: [req.node] }) === 'local') {
      // The program resolves the name itself; an outgoing filter written with names (a compose
      // service's `redis`) must still know the IPs it gets, so resolve it here too, where the
      // program's resolver is (the same host, or the sidecar's shared namespace).
      if (this.features.outgoing.filter) await this.rememberLocal(req.node);
      return { status: LpStatus.Bypass, ...none };
    }
    const family = req.family === 2 ? 4 : req.family === 10 ? 6 : 0;
    this.stats.lookups++;
    try {
      const res = await this.agent.request('dns.lookup', { name: req.node, family });
      const addresses = res.addresses.filter((a) => a.family === 4 || a.family === 6).map((a) => ({ family: a.family, address: a.address }));
      for (const a of addresses) this.names.add(a.address, req.node);
      if (addresses.length === 0) return { status: EAI.NODATA, ...none };
      this.log.debug(`resolved ${req.node} in the target: ${addresses.map((a) => a.address).join(', ')}`);
      return { status: LpStatus.Ok, addresses, canonname: res.canonname ?? req.node };
    } catch (err) {
      const code = (err as { code?: string }).code;
      this.log.debug(`lookup ${req.node} in the target failed: ${code ?? (err as Error).message}`);
      return { status: dnsStatus(code), ...none };
    }
  }

  private async rememberLocal(name: string): Promise<void> {
    try {
      for (const a of await localLookup(name, { all: true })) this.names.add(a.address, name);
    } catch {
      // Not resolvable here either: the program's own lookup fails the same way.
    }
  }
}
