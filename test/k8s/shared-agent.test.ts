/**
 * One shared agent per target on Kubernetes (agent.shared, job mode): two `mirrord exec` sessions
 * steal port 8080 of deployment/app with filters x-session: a and b, through one agent Job; a
 * client pod calls the app's Service. Then the shared agent process is SIGKILLed: its listener
 * removes the chain and the app answers its own clients again.
 * Run: `node --import tsx --test test/k8s/shared-agent.test.ts` with KUBECONFIG set (test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { curlApp as curlService, deployApp, podNat, serveUnderMirrord, type AppFixture, type ExecSession } from '../helpers/k8s-app.js';
import { runCli } from '../helpers/cli.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, waitFor } from '../helpers/k8s.js';
import { freePort } from '../helpers/ports.js';

describe('Kubernetes: one shared agent, two filtered steals', { timeout: 900_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let app: AppFixture;
  let appPod = '';
  let tmp = '';
  const sessions: ExecSession[] = [];

  before(async () => {
    const images = await k8sTestImages();
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-shared');
    app = await deployApp(ns.name, images[0]!, images[1]!);
    appPod = app.appPod.metadata!.name!;
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-shared-'));
  });

  after(async () => {
    for (const s of sessions) await s.stop('SIGKILL').catch(() => undefined);
    await ns?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const curlApp = (header?: string) => curlService(app, '/', header, 3);
  const appNat = () => podNat(ns.name, appPod);
  const sharedJobs = async () =>
    (await kube().batch.listNamespacedJob({ namespace: ns.name, labelSelector: 'dev.mirrord/shared' })).items.filter((j) => !j.status?.completionTime);

  /** A session stealing 8080 with filter x-session: WHO, its local server answering WHO. */
  const session = async (who: string) => {
    const port = await freePort();
    const dir = path.join(tmp, who);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'index.html'), `${who}\n`);
    const cfg = path.join(tmp, `${who}.json`);
    writeFileSync(
      cfg,
      JSON.stringify({
        key: `dev-${who}`,
        agent: { shared: true, ttl: 2 },
        feature: { network: { incoming: { mode: 'steal', port_mapping: [[port, 8080]], http_filter: { header_filter: `^x-session: ${who}$` } } } },
      }),
    );
    const session = serveUnderMirrord(ns.name, 'deployment/app', cfg, port, dir);
    sessions.push(session);
    return session;
  };

  it('two sessions steal 8080 with x-session a and b through one agent; a ends, b goes on; the agent killed: the app answers again', async () => {
    const baseline = await appNat();
    const a = await session('a');
    const b = await session('b');
    try {
      await waitFor('both sessions to steal', async () => (await curlApp('x-session: a')) === 'a' && (await curlApp('x-session: b')) === 'b', 120_000, 500);
      assert.match(await curlApp(), /^hello from app-/, 'requests without the header reach the app');
      assert.equal((await sharedJobs()).length, 1, 'one shared agent Job for both sessions');

      // mirrord status on Kubernetes: the shared agent pod, both sessions with their keys and filters.
      const st = await runCli(['status', '-n', ns.name, '--no-docker', '--output', 'json'], { timeoutMs: 60_000 });
      assert.equal(st.code, 0, st.stderr);
      const agents = JSON.parse(st.stdout) as Array<{
        target: string;
        shared: boolean;
        sessions: Array<{ client: string; subscriptions: Array<{ mode: string; filter?: string }> }>;
      }>;
      assert.equal(agents.length, 1, st.stdout);
      assert.ok(agents[0]!.shared && agents[0]!.target.startsWith(`pod/${appPod}`), st.stdout);
      const seen = agents[0]!.sessions.map((x) => `${/\bkey (\S+)$/.exec(x.client)?.[1]} ${x.subscriptions.map((p) => `${p.mode} ${p.filter}`).join()}`).sort();
      assert.deepEqual(seen, ['dev-a steal header ^x-session: a$', 'dev-b steal header ^x-session: b$'], st.stdout);
      const ls = await runCli(['ls', '-n', ns.name, '--no-docker', '--sessions'], { timeoutMs: 60_000 });
      assert.equal(ls.code, 0, ls.stderr);
      // Both sessions under the agent, in the order they joined (a and b start at once).
      assert.match(ls.stdout, new RegExp(`pod/${appPod}\\n {2}shared agent pod/\\S+ \\(namespace ${ns.name}\\):\\n {4}session \\w+ .*key dev-[ab]`), ls.stdout);
      for (const key of ['dev-a', 'dev-b']) assert.match(ls.stdout, new RegExp(`\\n {4}session \\w+ .*key ${key} `), ls.stdout);

      await a.stop();
      await waitFor("a's requests to reach the app", async () => /^hello from app-/.test(await curlApp('x-session: a')), 10_000, 200);
      assert.equal(await curlApp('x-session: b'), 'b', 'b goes on');

      // Heal: the shared agent process (not its listener) killed mid-steal.
      const agentPid = readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .find((p) => {
          try {
            const env = readFileSync(`/proc/${p}/environ`, 'utf8');
            return env.includes('MIRRORD_AGENT_MODE=shared') && !env.includes('MIRRORD_AGENT_MODE=listen');
          } catch {
            return false;
          }
        });
      assert.ok(agentPid, 'the shared agent process runs on this host');
      process.kill(Number(agentPid), 'SIGKILL');
      const killed = Date.now();
      await waitFor('the app to answer b-requests itself', async () => /^hello from app-/.test(await curlApp('x-session: b')), 10_000, 100);
      const took = Date.now() - killed;
      assert.ok(took < 3000, `the app answered its own clients again only after ${took} ms`);
      assert.equal(await appNat(), baseline, 'the nat table is what it was');
    } finally {
      await a.stop().catch(() => undefined);
      await b.stop().catch(() => undefined);
    }
    await waitFor('the shared agent Job to finish', async () => (await sharedJobs()).length === 0, 60_000, 500);
  });
});
