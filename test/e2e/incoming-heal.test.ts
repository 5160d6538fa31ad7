import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { runCli } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';
import { inTargetNet, killGroups, natTable, startMirrord, stopMirrord, until } from '../helpers/incoming.js';
import { sessionContainers, waitSessionGone } from '../helpers/sessions.js';

/**
 * The target heals from any fault (docs/incoming.md): the agent and its guard killed together
 * while the CLI runs, and chains left by sessions whose agent is gone, removed by the next session
 * whether or not it uses incoming traffic.
 */
const PORT = 8080;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-heal-'));
const LOCAL_SERVER = path.join(dir, 'local-server.js');
writeFileSync(LOCAL_SERVER, `require('http').createServer((q, s) => s.end('from-local ' + q.url)).listen(${PORT}, () => console.log('listening'));`);
const TARGET_APP = `require('http').createServer((q, s) => s.end('from-target ' + q.url)).listen(${PORT})`;
/** A chain as a session whose agent died would leave it: a jump from PREROUTING and a REDIRECT. */
const STALE = 'MIRRORD_deadbeef0001';

let network: { name: string; remove(): Promise<void> };
let target: TestContainer;
let client: TestContainer;
let agentImage = '';

async function curl(url: string, seconds = 5): Promise<string> {
  return (await client.exec(['curl', '-s', '-m', String(seconds), url])).stdout;
}

/** Adds STALE to the back end the agent picks (the one that already holds nat rules; nft else). */
async function addStaleChain(): Promise<void> {
  const script = `b=nft; [ "$(iptables-legacy-save -t nat 2>/dev/null | grep -c '^-A')" -gt 0 ] && b=legacy
iptables-$b -w 5 -t nat -N ${STALE} && iptables-$b -w 5 -t nat -I PREROUTING 1 -p tcp -j ${STALE} && iptables-$b -w 5 -t nat -A ${STALE} -p tcp --dport 9 -j REDIRECT --to-ports 1`;
  const r = await inTargetNet(target.id, agentImage, ['sh', '-c', script]);
  assert.equal(r.code, 0, r.output);
}

describe('incoming traffic: the target heals from any fault', { timeout: 300_000 }, () => {
  let baseline = '';

  before(async () => {
    agentImage = await ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log: createLogger('test', 'error') });
    network = await createNetwork('mirrord-heal');
    target = await runContainer({ name: 'heal-target', network: network.name, cmd: ['node', '-e', TARGET_APP], waitFor: { tcpPort: PORT } });
    client = await runContainer({ name: 'heal-client', network: network.name, cmd: ['sleep', '100000'] });
    baseline = await natTable(target.id, agentImage);
  });

  after(async () => {
    killGroups();
    for (const c of [target, client]) await c?.remove().catch(() => undefined);
    await network?.remove().catch(() => undefined);
  });

  it('agent and guard SIGKILLed together mid-steal, the CLI alive: the target answers within 3 s, nat table as before', async () => {
    const r = startMirrord(target.name, ['--steal'], ['node', LOCAL_SERVER]);
    try {
      await until('the steal to take effect', async () => (await curl(`http://${target.name}:${PORT}/s`)) === 'from-local /s');
      const mine = await sessionContainers(r.child.pid!);
      const agent = mine.find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      const guard = mine.find((c) => c.Labels['dev.mirrord.agent'] === 'guard');
      assert.ok(agent && guard, `an agent and a guard run (found: ${mine.map((c) => c.Names[0]).join(', ')})`);
      // The guard first, so that nothing in the target's namespaces is left to remove the chain.
      await docker().getContainer(guard.Id).kill({ signal: 'SIGKILL' });
      await docker().getContainer(agent.Id).kill({ signal: 'SIGKILL' });
      const killed = Date.now();
      await until('the target to answer again', async () => (await curl(`http://${target.name}:${PORT}/s`, 1)) === 'from-target /s', 15_000);
      const took = Date.now() - killed;
      assert.ok(took < 3000, `the target answered its own clients again only after ${took} ms`);
      assert.equal(r.child.exitCode, null, 'the CLI still runs');
      assert.match(r.out(), /lost the link to the agent/);
      await until('the healer to leave', async () => (await sessionContainers(r.child.pid!)).length === 0, 15_000);
      assert.equal(await natTable(target.id, agentImage), baseline, 'the nat table is what it was');
    } finally {
      await stopMirrord(r);
    }
    assert.deepEqual(await waitSessionGone(r.child.pid!), []);
  });

  it("a session without incoming traffic removes a dead session's chain, never a live one's", async () => {
    const live = startMirrord(target.name, ['--steal'], ['node', LOCAL_SERVER]);
    try {
      await until('the live steal', async () => (await curl(`http://${target.name}:${PORT}/l`)) === 'from-local /l');
      await addStaleChain();
      assert.match(await natTable(target.id, agentImage), new RegExp(STALE));
      const res = await runCli(['exec', '-t', `docker/${target.name}`, '--', 'true'], { timeoutMs: 60_000 });
      assert.equal(res.code, 0, res.stderr);
      const after = await natTable(target.id, agentImage);
      assert.doesNotMatch(after, new RegExp(STALE), "the dead session's chain is gone");
      assert.match(after, /MIRRORD_/, "the live session's chain stays");
      assert.equal(await curl(`http://${target.name}:${PORT}/l`), 'from-local /l', 'the live session still steals');
    } finally {
      await stopMirrord(live);
    }
    assert.equal(await natTable(target.id, agentImage), baseline);
  });
});
