/**
 * The agent's NAT rules in the target's network namespace. Every rule lives in a chain of our own,
 * named for the session (`MIRRORD_<session>`), reached by one jump from PREROUTING; removing the
 * session is "delete the jump, flush, delete the chain", which also works for a session whose agent
 * died (the guard, or the next agent's stale-rule sweep, does it).
 *
 * Both iptables back ends exist in the wild: the one whose tables already hold rules in this
 * namespace (Docker's DNS rules, a CNI's) is the one the kernel path uses, so that is the one we use.
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { readProcText } from '../proc.js';
import { promisify } from 'node:util';
import type { Logger } from '../../../common/log.js';
import { settings } from '../settings.js';

const run = promisify(execFile);
export const CHAIN_PREFIX = 'MIRRORD_';

export type Backend = 'nft' | 'legacy';

export interface IptablesRunner {
  (binary: string, args: string[]): Promise<string>;
}

const defaultRunner: IptablesRunner = async (binary, args) => (await run(binary, args, { timeout: 10_000 })).stdout;

/** conntrack -D prints each entry it deleted on stdout, one a line (its count goes to stderr). */
function countFlushed(out: string): number {
  return out.split('\n').filter((l) => /^\s*tcp\b/.test(l)).length;
}

export function chainName(session: string): string {
  // iptables chain names are at most 28 characters.
  return `${CHAIN_PREFIX}${session.replace(/[^A-Za-z0-9]/g, '').slice(0, 20)}`;
}

export class Iptables {
  private constructor(
    readonly backend: Backend,
    private readonly exec: IptablesRunner,
    private readonly log?: Logger,
  ) {}

  /**
   * Picks the back end whose nat table already has rules here; nft when neither has any.
   * agent.nftables (`forced`) names it instead: true iptables-nft, false iptables-legacy.
   */
  static async detect(log?: Logger, exec: IptablesRunner = defaultRunner, forced: boolean | undefined = settings().nftables): Promise<Iptables> {
    if (forced !== undefined) {
      const backend: Backend = forced ? 'nft' : 'legacy';
      log?.debug(`iptables back end: ${backend} (agent.nftables)`);
      return new Iptables(backend, exec, log);
    }
    const count = async (b: Backend) => {
      try {
        const out = await exec(`iptables-${b}-save`, ['-t', 'nat']);
        return out.split('\n').filter((l) => l.startsWith('-A ')).length;
      } catch {
        return -1;
      }
    };
    const [nft, legacy] = await Promise.all([count('nft'), count('legacy')]);
    const backend: Backend = legacy > 0 && legacy >= nft ? 'legacy' : nft >= 0 ? 'nft' : 'legacy';
    log?.debug(`iptables back end: ${backend} (nat rules: nft ${nft}, legacy ${legacy})`);
    return new Iptables(backend, exec, log);
  }

  private ipt(family: 4 | 6, args: string[]): Promise<string> {
    return this.exec(`${family === 4 ? 'iptables' : 'ip6tables'}-${this.backend}`, ['-w', '5', ...args]);
  }

  /** The whole nat table as iptables-save prints it (tests compare it before and after). */
  save(family: 4 | 6 = 4): Promise<string> {
    return this.exec(`${family === 4 ? 'iptables' : 'ip6tables'}-${this.backend}-save`, ['-t', 'nat']);
  }

  /** Creates the session chain and its jump; IPv6 is best effort (many targets have no IPv6). */
  async createChain(chain: string): Promise<void> {
    await this.ipt(4, ['-t', 'nat', '-N', chain]);
    await this.ipt(4, ['-t', 'nat', '-I', 'PREROUTING', '1', '-p', 'tcp', '-j', chain]);
    try {
      await this.ipt(6, ['-t', 'nat', '-N', chain]);
      await this.ipt(6, ['-t', 'nat', '-I', 'PREROUTING', '1', '-p', 'tcp', '-j', chain]);
    } catch (err) {
      this.log?.debug(`no IPv6 redirect: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  async redirect(chain: string, port: number, toPort: number, add: boolean): Promise<void> {
    const rule = ['-t', 'nat', add ? '-A' : '-D', chain, '-p', 'tcp', '--dport', String(port), '-j', 'REDIRECT', '--to-ports', String(toPort)];
    await this.ipt(4, rule);
    await this.ipt(6, rule).catch(() => undefined);
  }

  /** A back end named by the caller, without detection (the healer, in a hurry). */
  static using(backend: Backend, log?: Logger, exec: IptablesRunner = defaultRunner): Iptables {
    return new Iptables(backend, exec, log);
  }

  /** Deletes every jump to the chain: from then on no new connection is redirected. Quiet when none. */
  async removeJumps(chain: string, family: 4 | 6 = 4): Promise<void> {
    for (let i = 0; i < 16; i++) {
      try {
        await this.ipt(family, ['-t', 'nat', '-D', 'PREROUTING', '-p', 'tcp', '-j', chain]);
      } catch {
        break;
      }
    }
  }

  /** Removes a chain and every jump to it; quiet when it is already gone. */
  async removeChain(chain: string): Promise<void> {
    for (const family of [4, 6] as const) {
      await this.removeJumps(chain, family);
      await this.ipt(family, ['-t', 'nat', '-F', chain]).catch(() => undefined);
      await this.ipt(family, ['-t', 'nat', '-X', chain]).catch(() => undefined);
    }
  }

  /**
   * Deletes the conntrack entries of TCP connections to `port` (IPv4 and IPv6) with the conntrack
   * tool; returns how many went. conntrack exits 1 when there was none.
   */
  async flushConnections(port: number): Promise<number> {
    let total = 0;
    for (const family of ['ipv4', 'ipv6']) {
      try {
        const out = await this.exec('conntrack', ['-D', '-f', family, '-p', 'tcp', '--orig-port-dst', String(port)]);
        total += countFlushed(out);
      } catch (err) {
        const e = err as { code?: unknown; stderr?: string; message: string };
        if (/\b0 flow entries/.test(e.stderr ?? '')) continue;
        if (e.code === 'ENOENT') throw new Error('the agent image has no conntrack tool', { cause: err });
        if (family === 'ipv6') continue;
        throw new Error(e.stderr?.trim() || e.message, { cause: err });
      }
    }
    return total;
  }

  async listChains(): Promise<string[]> {
    const out = await this.save(4).catch(() => '');
    return [...out.matchAll(/^:(MIRRORD_[A-Za-z0-9]+) /gm)].map((m) => m[1]!);
  }
}

/** Modes of the agent image that act on a session's rules without owning them. */
const NOT_OWNER = /(?:^|\0)MIRRORD_AGENT_MODE=(?:guard|heal)(?:\0|$)/;

/**
 * Sessions whose agent still runs: every agent carries MIRRORD_AGENT_SESSION in its environment,
 * and all agents of a target share its PID namespace, so /proc tells. A guard or a healer names a
 * session without keeping it alive. `unreadable` counts processes whose environment could not be
 * read for a reason other than their end: any of them may be a live agent.
 */
export async function liveSessions(procRoot = '/proc'): Promise<{ live: Set<string>; unreadable: number }> {
  const live = new Set<string>();
  let unreadable = 0;
  for (const pid of await readdir(procRoot).catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const env = await readProcText(`${procRoot}/${pid}/environ`);
      const m = /(?:^|\0)MIRRORD_AGENT_SESSION=([^\0]+)/.exec(env);
      if (m && !NOT_OWNER.test(env)) live.add(chainName(m[1]!));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT/ESRCH: a process that ended while we looked.
      if (code !== 'ENOENT' && code !== 'ESRCH') unreadable++;
    }
  }
  return { live, unreadable };
}

/**
 * Removes the chains of sessions whose agent is gone (an agent killed with its guard, say). When
 * some process could not be looked at, nothing is removed: a live session's rules are worth more
 * than a stale one's.
 */
export async function sweepStaleChains(ipt: Iptables, mine: string, log?: Logger, procRoot = '/proc'): Promise<string[]> {
  const chains = (await ipt.listChains()).filter((c) => c !== mine);
  if (chains.length === 0) return [];
  const { live, unreadable } = await liveSessions(procRoot);
  const stale = chains.filter((c) => !live.has(c));
  if (stale.length && unreadable) {
    log?.info(`not removing ${stale.join(', ')}: ${unreadable} process(es) could not be checked (the agent needs SYS_PTRACE)`);
    return [];
  }
  for (const chain of stale) {
    log?.info(`removing stale rules of a dead session: ${chain}`);
    await ipt.removeChain(chain);
  }
  return stale;
}
