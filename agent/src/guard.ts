/**
 * The guard: a second, tiny container in the target's namespaces that outlives the agent by a few
 * milliseconds. When the agent's process is gone, however it went (SIGKILL, OOM, a crash, its
 * container removed), the guard removes the session's iptables rules, so the target never keeps
 * redirecting its clients to a dead port. It exits right after.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log.js';
import { Iptables, chainName } from './incoming/iptables.js';

export interface GuardOptions {
  pid: number;
  session: string;
  log?: Logger;
  pollMs?: number;
  /** Injected by tests. */
  iptables?: () => Promise<Iptables>;
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function runGuard(o: GuardOptions): Promise<void> {
  if (!Number.isInteger(o.pid) || o.pid < 1 || !o.session) {
    o.log?.error('guard needs MIRRORD_GUARD_PID and MIRRORD_AGENT_SESSION');
    return;
  }
  // Detect the back end while the agent is alive, so cleanup after its death is one step.
  const ipt = await (o.iptables ?? (() => Iptables.detect(o.log)))();
  o.log?.info(`watching agent pid ${o.pid}`);
  while (isRunning(o.pid)) await sleep(o.pollMs ?? 100);
  const chain = chainName(o.session);
  if ((await ipt.listChains()).includes(chain)) {
    o.log?.info(`agent ${o.pid} is gone: removing ${chain}`);
    await ipt.removeChain(chain);
  }
}
