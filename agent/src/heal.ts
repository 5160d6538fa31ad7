/**
 * Heal mode: a one-shot run of the agent image in the target's namespaces, started by the CLI when
 * it loses its link to the agent. The agent may have been killed together with its guard (a user's
 * `docker kill` of every container joined to the target), and then nothing in the target's
 * namespace would remove the session's chain: the target's port would stay redirected to nothing.
 * The healer removes that session's chain whatever its state, sweeps the chains of other sessions
 * whose agent is gone, and exits.
 */
import type { Logger } from '../../common/log.js';
import { Iptables, chainName, sweepStaleChains, type Backend } from './incoming/iptables.js';

export interface HealOptions {
  /** The session whose rules must go (empty: only sweep). */
  session: string;
  log?: Logger;
  /** Injected by tests. */
  iptables?: { detect(): Promise<Iptables>; using(backend: Backend): Iptables };
  procRoot?: string;
}

/** Resolves to the chains it removed. */
export async function runHeal(o: HealOptions): Promise<string[]> {
  const make = o.iptables ?? { detect: () => Iptables.detect(o.log), using: (b: Backend) => Iptables.using(b, o.log) };
  const mine = o.session ? chainName(o.session) : '';
  // The target's clients wait on this step alone: drop the jump in both back ends at once, before
  // detecting which one is in use (in the other, the command fails quietly).
  if (mine) await Promise.all((['nft', 'legacy'] as const).map((b) => make.using(b).removeJumps(mine)));
  const ipt = await make.detect();
  const removed: string[] = [];
  if (mine && (await ipt.listChains()).includes(mine)) {
    o.log?.info(`the session's link is lost: removing ${mine}`);
    await ipt.removeChain(mine);
    removed.push(mine);
  }
  removed.push(...(await sweepStaleChains(ipt, mine, o.log, o.procRoot)));
  return removed;
}
