import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runHeal } from '../../agent/src/heal.js';
import { Iptables, chainName, sweepStaleChains, type Backend, type IptablesRunner } from '../../agent/src/incoming/iptables.js';

/**
 * The healer and the stale-chain sweep against a simulated nat table per back end (the commands
 * are iptables' own; this machine's tables are never touched) and a fake /proc of agents, guards
 * and healers.
 */
class FakeNat {
  readonly chains = new Map<Backend, Set<string>>([
    ['nft', new Set()],
    ['legacy', new Set()],
  ]);
  readonly jumps = new Map<Backend, string[]>([
    ['nft', []],
    ['legacy', []],
  ]);
  readonly log: string[] = [];

  constructor(readonly inUse: Backend) {}

  add(chain: string): void {
    this.chains.get(this.inUse)!.add(chain);
    this.jumps.get(this.inUse)!.push(chain);
  }

  has(chain: string): boolean {
    return this.chains.get(this.inUse)!.has(chain) || this.jumps.get(this.inUse)!.includes(chain);
  }

  readonly run: IptablesRunner = async (bin, args) => {
    const m = /^ip(6?)tables-(nft|legacy)(-save)?$/.exec(bin);
    assert.ok(m, bin);
    const backend = m[2] as Backend;
    this.log.push(`${bin} ${args.join(' ')}`);
    if (m[1]) throw new Error('no IPv6 here');
    const chains = this.chains.get(backend)!;
    const jumps = this.jumps.get(backend)!;
    if (m[3]) {
      // Docker's DNS rules make the back end in use the one with rules.
      const docker = backend === this.inUse ? ['-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT'] : [];
      return ['*nat', ...[...chains].map((c) => `:${c} - [0:0]`), ...docker, ...jumps.map((c) => `-A PREROUTING -p tcp -j ${c}`), 'COMMIT', ''].join('\n');
    }
    const [, , op, chain] = args.slice(2);
    const target = args[args.length - 1]!;
    if (op === '-D' && chain === 'PREROUTING') {
      const at = jumps.indexOf(target);
      if (at < 0) throw new Error('Bad rule (does a matching rule exist in that chain?)');
      jumps.splice(at, 1);
    } else if (op === '-X' || op === '-F') {
      if (!chains.has(chain!)) throw new Error('No chain/target/match by that name');
      if (op === '-X') chains.delete(chain!);
    }
    return '';
  };

  iptables() {
    return { detect: () => Iptables.detect(undefined, this.run), using: (b: Backend) => Iptables.using(b, undefined, this.run) };
  }
}

/** A /proc with one process per entry: its environment, or a directory where environ should be (unreadable). */
function fakeProc(procs: Array<Record<string, string> | 'unreadable'>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mirrord-proc-'));
  procs.forEach((env, i) => {
    const dir = path.join(root, String(100 + i));
    mkdirSync(dir);
    if (env === 'unreadable') mkdirSync(path.join(dir, 'environ'));
    else
      writeFileSync(
        path.join(dir, 'environ'),
        Object.entries(env)
          .map(([k, v]) => `${k}=${v}\0`)
          .join(''),
      );
  });
  mkdirSync(path.join(root, 'self'));
  return root;
}

describe('healer and stale-chain sweep', () => {
  const procs = fakeProc([
    { PATH: '/bin', MIRRORD_AGENT_SESSION: 'alive' },
    { MIRRORD_AGENT_SESSION: 'guarded', MIRRORD_AGENT_MODE: 'guard', MIRRORD_GUARD_PID: '7' },
    { MIRRORD_AGENT_SESSION: 'healing', MIRRORD_AGENT_MODE: 'heal' },
    { HOME: '/root' },
  ]);

  it("removes its session's chain and every chain whose agent is gone, never a live agent's", async () => {
    for (const backend of ['nft', 'legacy'] as const) {
      const nat = new FakeNat(backend);
      for (const s of ['me', 'alive', 'guarded', 'healing', 'gone']) nat.add(chainName(s));
      const removed = await runHeal({ session: 'me', iptables: nat.iptables(), procRoot: procs });
      assert.deepEqual(removed.sort(), ['gone', 'guarded', 'healing', 'me'].map(chainName).sort(), backend);
      assert.ok(nat.has(chainName('alive')), `${backend}: the live session keeps its chain`);
      for (const s of ['me', 'guarded', 'healing', 'gone']) assert.ok(!nat.has(chainName(s)), `${backend}: ${s} is gone`);
    }
  });

  it("drops its session's jump before anything else, in both back ends", async () => {
    const nat = new FakeNat('legacy');
    nat.add(chainName('me'));
    await runHeal({ session: 'me', iptables: nat.iptables(), procRoot: procs });
    const first = nat.log.slice(0, 2).sort();
    assert.deepEqual(first, [
      `iptables-legacy -w 5 -t nat -D PREROUTING -p tcp -j ${chainName('me')}`,
      `iptables-nft -w 5 -t nat -D PREROUTING -p tcp -j ${chainName('me')}`,
    ]);
  });

  it("a process it cannot look at stops the sweep of others (its own session's chain still goes)", async () => {
    const nat = new FakeNat('nft');
    for (const s of ['me', 'maybe']) nat.add(chainName(s));
    const removed = await runHeal({ session: 'me', iptables: nat.iptables(), procRoot: fakeProc([{ HOME: '/' }, 'unreadable']) });
    assert.deepEqual(removed, [chainName('me')]);
    assert.ok(nat.has(chainName('maybe')));
  });

  it('sweep without a session of its own; nothing to do is no /proc scan', async () => {
    const nat = new FakeNat('nft');
    assert.deepEqual(await sweepStaleChains(await nat.iptables().detect(), '', undefined, '/nonexistent'), []);
    nat.add(chainName('gone'));
    assert.deepEqual(await sweepStaleChains(await nat.iptables().detect(), '', undefined, procs), [chainName('gone')]);
  });
});
