/**
 * Incoming traffic figures, same run: a client container calls the target's HTTP port
 * - directly (the target's own app answers),
 * - with the port stolen by a local copy of the same server under `mirrord exec --steal`,
 * - with the port mirrored (the target's app answers; the agent copies from captured packets),
 *   interleaved with direct rounds (BENCH_MIRROR_ROUNDS, default 3; medians): the goal is the
 *   target's own throughput and p50 within 5 % of direct,
 * - stolen by HTTP filter through a shared agent (agent.shared): one session, then four sessions
 *   with four filters, the requests matching the first one's.
 * Printed: requests per second (concurrency 8) and p50/p99 latency of sequential keep-alive requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { RUN_ID, createNetwork, removeTestResources, runContainer, type TestContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const PORT = 8080;
const SEQUENTIAL = Number(process.env.BENCH_REQUESTS ?? 2000);
const SERVER = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok')); }).listen(Number(process.argv[1] || ${PORT}))`;
const LOAD = `
const http = require('http');
const [url, n, conc, session] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
const headers = session ? { 'x-session': session } : {};
const one = () => new Promise((res, rej) => http.get(url, { agent, headers }, (r) => { r.resume(); r.on('end', res); }).on('error', rej));
(async () => {
  for (let i = 0; i < 200; i++) await one();
  const lat = [];
  for (let i = 0; i < n; i++) { const t = process.hrtime.bigint(); await one(); lat.push(Number(process.hrtime.bigint() - t) / 1e6); }
  lat.sort((a, b) => a - b);
  const t0 = Date.now(); let left = n * 2;
  await Promise.all(Array.from({ length: conc }, async () => { while (left-- > 0) await one(); }));
  console.log(JSON.stringify({ p50: lat[Math.floor(n / 2)], p99: lat[Math.floor(n * 0.99)], rps: (n * 2) / ((Date.now() - t0) / 1000) }));
  agent.destroy();
})();`;

interface Figures {
  p50: number;
  p99: number;
  rps: number;
}

const MIRROR_ROUNDS = Number(process.env.BENCH_MIRROR_ROUNDS ?? 3);

/** Each figure's median over the rounds (of the figure, not of one round). */
function median(rounds: Figures[]): Figures {
  const mid = (k: keyof Figures) => rounds.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(rounds.length / 2)]!;
  return { p50: mid('p50'), p99: mid('p99'), rps: mid('rps') };
}

async function load(client: TestContainer, host: string, session = ''): Promise<Figures> {
  const r = await client.exec(['node', '-e', LOAD, `http://${host}:${PORT}/`, String(SEQUENTIAL), '8', session]);
  if (r.code !== 0) throw new Error(`load failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Figures;
}

async function underMirrord(targetName: string, flags: string[], client: TestContainer, expectLocal: boolean): Promise<Figures> {
  const child = spawn(process.execPath, [cli, 'exec', '-t', `docker/${targetName}`, ...flags, '--', process.execPath, '-e', SERVER], {
    stdio: 'ignore',
    env: { ...process.env, MIRRORD_LOG: 'error' },
  });
  try {
    // Ready once the agent's REDIRECT is in place: the subscription answers before we measure.
    for (let i = 0; i < 100; i++) {
      const probe = await client.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${targetName}:${PORT}/`]);
      if (probe.stdout === '200' && (!expectLocal || i > 3)) break;
      await sleep(200);
    }
    await sleep(1000);
    return await load(client, targetName);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

/** `count` shared sessions stealing with filters x-session: s0..s(count-1); the load carries s0. */
async function filteredShared(targetName: string, count: number, client: TestContainer): Promise<Figures> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-filter-'));
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const cfg = path.join(dir, `s${i}.json`);
      const local = 9100 + i;
      writeFileSync(
        cfg,
        JSON.stringify({
          agent: { shared: true, ttl: 0 },
          feature: { network: { incoming: { mode: 'steal', port_mapping: [[local, PORT]], http_filter: { header_filter: `^x-session: s${i}$` } } } },
        }),
      );
      children.push(
        spawn(process.execPath, [cli, 'exec', '-t', `docker/${targetName}`, '-f', cfg, '--', process.execPath, '-e', SERVER, String(local)], {
          stdio: 'ignore',
          env: { ...process.env, MIRRORD_LOG: 'error' },
        }),
      );
      // One after the other: the first starts the shared agent, the others join it.
      for (let t = 0; t < 100; t++) {
        const probe = await client.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `x-session: s${i}`, `http://${targetName}:${PORT}/`]);
        if (probe.stdout === '200' && t > 3) break;
        await sleep(200);
      }
    }
    await sleep(1000);
    return await load(client, targetName, 's0');
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r(null)))));
  }
}

async function main(): Promise<void> {
  const network = await createNetwork('mirrord-bench-in');
  try {
    const target = await runContainer({ name: 'bench-in-target', network: network.name, cmd: ['node', '-e', SERVER], waitFor: { tcpPort: PORT } });
    const client = await runContainer({ name: 'bench-in-client', network: network.name, cmd: ['sleep', '100000'] });
    // Direct and mirrored alternate, so a change in the machine's load hits both alike.
    const directs: Figures[] = [];
    const mirrors: Figures[] = [];
    for (let i = 0; i < MIRROR_ROUNDS; i++) {
      directs.push(await load(client, target.name));
      mirrors.push(await underMirrord(target.name, [], client, false));
    }
    const direct = median(directs);
    const mirrored = median(mirrors);
    const stolen = await underMirrord(target.name, ['--steal'], client, true);
    const filtered1 = await filteredShared(target.name, 1, client);
    const filtered4 = await filteredShared(target.name, 4, client);
    const row = (name: string, f: Figures) =>
      `${name.padEnd(34)} ${f.rps.toFixed(0).padStart(8)} ${f.p50.toFixed(3).padStart(9)} ${f.p99.toFixed(3).padStart(9)}  rps ratio ${(f.rps / direct.rps).toFixed(2)}, p50 +${(f.p50 - direct.p50).toFixed(3)} ms`;
    process.stdout.write(
      `\nmirrord incoming bench (client container -> target:${PORT}, same run; ${SEQUENTIAL} sequential + ${SEQUENTIAL * 2} at concurrency 8)\n`,
    );
    process.stdout.write(`${'path'.padEnd(34)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)}\n`);
    process.stdout.write(
      `${'direct (target app answers)'.padEnd(34)} ${direct.rps.toFixed(0).padStart(8)} ${direct.p50.toFixed(3).padStart(9)} ${direct.p99.toFixed(3).padStart(9)}\n`,
    );
    process.stdout.write(row('stolen (local server answers)', stolen) + '\n');
    process.stdout.write(row('mirrored (target app, copy local)', mirrored) + '\n');
    process.stdout.write(
      `${''.padEnd(34)} mirrored/direct, median of ${MIRROR_ROUNDS} interleaved rounds: rps ${(mirrored.rps / direct.rps).toFixed(3)}, p50 ${(mirrored.p50 / direct.p50).toFixed(3)}\n`,
    );
    // Each round, so the spread shows next to the medians.
    const rounds = (xs: Figures[]) => xs.map((f) => `${f.rps.toFixed(0)}/${f.p50.toFixed(3)}`).join(' ');
    process.stdout.write(`${''.padEnd(34)} rounds (req/s / p50 ms): direct ${rounds(directs)}; mirrored ${rounds(mirrors)}\n`);
    process.stdout.write(row('filtered steal, 1 shared session', filtered1) + '\n');
    process.stdout.write(row('filtered steal, 4 shared sessions', filtered4) + '\n');
  } finally {
    await removeTestResources(RUN_ID);
    await network.remove();
  }
}

await main();
