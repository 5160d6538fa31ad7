/**
 * Incoming traffic figures, same run: a client container calls the target's HTTP port
 * - directly (the target's own app answers),
 * - with the port stolen by a local copy of the same server under `mirrord exec --steal`, on the fast
 *   path (each connection handed to the local server, docs/fast-path.md) and on the stream,
 * - with the port mirrored (the target's app answers; the agent copies from captured packets):
 *   while one session mirrors the target, the same loads alternate between it and a twin target
 *   (the same app, no session) in ABBA order, BENCH_MIRROR_ROUNDS (6) pairs; the goal is the
 *   target's own throughput and p50 within 5 % of the twin's. Twice: unpinned (every process on
 *   every core), and pinned, where the targets, their client and the agent run on BENCH_TARGET_CPUS
 *   and the CLI (intproxy) and the local server on BENCH_LOCAL_CPUS, as on a real deployment where
 *   only the agent shares the target's node. Every copy the local server gets is counted against
 *   the requests sent,
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
import { RUN_ID, createNetwork, docker, removeTestResources, runContainer, type TestContainer } from '../test/helpers/docker-fixtures.js';
import { sessionContainers } from '../test/helpers/sessions.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const PORT = 8080;
const SEQUENTIAL = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;
/** What one load sends: the warm-up, the sequential requests, then twice as many at concurrency 8. */
const PER_LOAD = WARMUP + SEQUENTIAL * 3;
const SERVER = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok')); }).listen(Number(process.argv[1] || ${PORT}))`;
/** The mirror's local server: counts the copies it gets, and says so when the count changes. */
const COUNTING_SERVER = `let n = 0, said = -1; require('http').createServer((q, s) => { q.resume(); q.on('end', () => { n++; s.end('ok'); }); }).listen(${PORT}); setInterval(() => { if (n !== said) { said = n; console.log('copies ' + n); } }, 50);`;
const LOAD = `
const http = require('http');
const [url, n, conc, session] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
const headers = session ? { 'x-session': session } : {};
const one = () => new Promise((res, rej) => http.get(url, { agent, headers }, (r) => { r.resume(); r.on('end', res); }).on('error', rej));
(async () => {
  for (let i = 0; i < ${WARMUP}; i++) await one();
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

const MIRROR_ROUNDS = Number(process.env.BENCH_MIRROR_ROUNDS ?? 6);
/** BENCH_FILTERED_ONLY=1: only the direct path and the filtered steal (1 and 4 sessions), BENCH_FILTER_ROUNDS (3) times. */
const FILTERED_ONLY = process.env.BENCH_FILTERED_ONLY === '1';
const FILTER_ROUNDS = Number(process.env.BENCH_FILTER_ROUNDS ?? 3);

/**
 * The pinned rounds' two core sets: the target's side (its app, its client, the agent) and the
 * developer's side (CLI with its intproxy, local server). Default: the first half of the cores and
 * the rest; BENCH_PIN=off leaves only the unpinned rounds.
 */
function coreSets(): { target: string; local: string } | undefined {
  const n = os.cpus().length;
  if (process.env.BENCH_PIN === 'off' || n < 2) return undefined;
  const half = Math.floor(n / 2);
  const range = (a: number, b: number) => (a === b ? `${a}` : `${a}-${b}`);
  const target = process.env.BENCH_TARGET_CPUS ?? range(0, half - 1);
  const local = process.env.BENCH_LOCAL_CPUS ?? range(half, n - 1);
  const valid = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
  for (const [k, v] of [
    ['BENCH_TARGET_CPUS', target],
    ['BENCH_LOCAL_CPUS', local],
  ] as const)
    if (!valid.test(v)) throw new Error(`${k}=${v} is not a CPU list (like 0 or 0-1,3)`);
  return { target, local };
}
const ALL_CPUS = `0-${os.cpus().length - 1}`;

/** Each figure's median over the rounds (of the figure, not of one round). */
function median(rounds: Figures[]): Figures {
  const mid = (k: keyof Figures) => rounds.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(rounds.length / 2)]!;
  return { p50: mid('p50'), p99: mid('p99'), rps: mid('rps') };
}

const cpuset = (id: string, cpus: string) => docker().getContainer(id).update({ CpusetCpus: cpus });

async function load(client: TestContainer, host: string, session = ''): Promise<Figures> {
  const r = await client.exec(['node', '-e', LOAD, `http://${host}:${PORT}/`, String(SEQUENTIAL), '8', session]);
  if (r.code !== 0) throw new Error(`load failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Figures;
}

interface Mirrored extends Figures {
  /** Copies the local server got of the load's requests (PER_LOAD sent). */
  copies: number;
  /** From the load's end until the last copy arrived. */
  lagMs: number;
}

interface Paired {
  directs: Figures[];
  mirrors: Mirrored[];
}

/**
 * One session mirrors `targetName`'s port while the same loads alternate between it and its twin (the
 * same app, no session) `rounds` times, in ABBA order so a drift of the machine's load hits both
 * alike. `pin` puts the CLI (and so the local server) on pin.local and the agent container on
 * pin.target. Each mirrored load waits for its copies, so the agent's catching up never overlaps
 * the next load.
 */
async function mirroring(
  targetName: string,
  twinName: string,
  client: TestContainer,
  rounds: number,
  pin?: { target: string; local: string },
): Promise<Paired> {
  const argv = [cli, 'exec', '-t', `docker/${targetName}`, '--', process.execPath, '-e', COUNTING_SERVER];
  const env = { ...process.env, MIRRORD_LOG: 'error' };
  const child = pin
    ? spawn('taskset', ['-c', pin.local, process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'ignore'], env })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'ignore'], env });
  let copies = 0;
  let lastCopyAt = 0;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    const m = [...d.matchAll(/copies (\d+)/g)].pop();
    if (m) {
      copies = Number(m[1]);
      lastCopyAt = Date.now();
    }
  });
  const mirrored = async (): Promise<Mirrored> => {
    const before = copies;
    const figures = await load(client, targetName);
    const loadEnd = Date.now();
    // The copies may trail the load (the capture runs at idle priority): wait for them to stop coming.
    while (copies - before < PER_LOAD && Date.now() - Math.max(loadEnd, lastCopyAt) < 5000) await sleep(50);
    return { ...figures, copies: copies - before, lagMs: Math.max(0, lastCopyAt - loadEnd) };
  };
  try {
    for (let i = 0; copies === 0; i++) {
      if (i > 150) throw new Error('no copy reached the local server within 30 s');
      await client.exec(['curl', '-s', '-o', '/dev/null', `http://${targetName}:${PORT}/`]);
      await sleep(200);
    }
    if (pin) {
      const agent = (await sessionContainers(child.pid!)).find((c) => c.Labels['dev.mirrord.agent'] === 'true');
      if (!agent) throw new Error('no agent container found to pin');
      await cpuset(agent.Id, pin.target);
    }
    await sleep(1000);
    const out: Paired = { directs: [], mirrors: [] };
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        out.directs.push(await load(client, twinName));
        out.mirrors.push(await mirrored());
      } else {
        out.mirrors.push(await mirrored());
        out.directs.push(await load(client, twinName));
      }
    }
    return out;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  }
}

async function underMirrord(targetName: string, flags: string[], client: TestContainer, expectLocal: boolean, env: NodeJS.ProcessEnv = {}): Promise<Figures> {
  const child = spawn(process.execPath, [cli, 'exec', '-t', `docker/${targetName}`, ...flags, '--', process.execPath, '-e', SERVER], {
    stdio: 'ignore',
    env: { ...process.env, MIRRORD_LOG: 'error', ...env },
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
  const pin = coreSets();
  const loadBefore = os.loadavg();
  const network = await createNetwork('mirrord-bench-in');
  try {
    const target = await runContainer({ name: 'bench-in-target', network: network.name, cmd: ['node', '-e', SERVER], waitFor: { tcpPort: PORT } });
    // The direct baseline: the same app in a container of its own that no session touches.
    const twin = await runContainer({ name: 'bench-in-twin', network: network.name, cmd: ['node', '-e', SERVER], waitFor: { tcpPort: PORT } });
    const client = await runContainer({ name: 'bench-in-client', network: network.name, cmd: ['sleep', '100000'] });
    const pinContainers = (cpus: string) => Promise.all([target, twin, client].map((c) => cpuset(c.id, cpus)));
    if (FILTERED_ONLY) {
      // The direct path, then 1 and 4 filtered sessions, in turns for BENCH_FILTER_ROUNDS: nothing else.
      const rows: string[] = [`filtered steal only (load average before: ${loadBefore.map((l) => l.toFixed(2)).join(' ')})`];
      for (let i = 0; i < FILTER_ROUNDS; i++) {
        const d = await load(client, twin.name);
        const f1 = await filteredShared(target.name, 1, client);
        const f4 = await filteredShared(target.name, 4, client);
        const fig = (f: Figures) => `${f.rps.toFixed(0)} req/s, p50 ${f.p50.toFixed(3)} ms, p99 ${f.p99.toFixed(3)} ms`;
        rows.push(`round ${i + 1}: direct ${fig(d)}; 1 session ${fig(f1)}; 4 sessions ${fig(f4)}; 4/1 rps ${(f4.rps / f1.rps).toFixed(2)}`);
      }
      rows.push(
        `load average after: ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
      );
      process.stdout.write(rows.join('\n') + '\n');
      return;
    }
    const unpinned = await mirroring(target.name, twin.name, client, MIRROR_ROUNDS);
    let pinned: Paired | undefined;
    if (pin) {
      await pinContainers(pin.target);
      pinned = await mirroring(target.name, twin.name, client, MIRROR_ROUNDS, pin);
      await pinContainers(ALL_CPUS);
    }
    const direct = median(unpinned.directs);
    const stolen = await underMirrord(target.name, ['--steal'], client, true);
    // The same steal on the stream: each connection's bytes through the agent, the link and the intproxy.
    const stolenStream = await underMirrord(target.name, ['--steal'], client, true, { MIRRORD_AGENT_FD_PASSING: 'off' });
    const filtered1 = await filteredShared(target.name, 1, client);
    const filtered4 = await filteredShared(target.name, 4, client);
    const row = (name: string, f: Figures, base = direct) =>
      `${name.padEnd(34)} ${f.rps.toFixed(0).padStart(8)} ${f.p50.toFixed(3).padStart(9)} ${f.p99.toFixed(3).padStart(9)}` +
      (f === base ? '' : `  rps ratio ${(f.rps / base.rps).toFixed(2)}, p50 +${(f.p50 - base.p50).toFixed(3)} ms`);
    const out: string[] = [];
    out.push(`\nmirrord incoming bench (client container -> target:${PORT}, same run; ${SEQUENTIAL} sequential + ${SEQUENTIAL * 2} at concurrency 8)`);
    out.push(`load average before: ${loadBefore.map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
    out.push(`${'path'.padEnd(34)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)}`);
    out.push(row('direct (target app answers)', direct));
    out.push(row('stolen, fast path (socket handed)', stolen));
    out.push(row('stolen, stream (fd_passing off)', stolenStream));
    const mirrorRows = (label: string, { directs, mirrors }: Paired, method: string) => {
      const d = median(directs);
      const m = median(mirrors);
      const ratios = (k: 'rps' | 'p50') => mirrors.map((f, i) => f[k] / directs[i]![k]).sort((x, y) => x - y);
      const mid = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;
      out.push(`-- ${label}: ${method}`);
      out.push(row('direct (twin target, no session)', d, d));
      out.push(row('mirrored (target app, copy local)', m, d));
      out.push(
        `${''.padEnd(34)} mirrored/direct over ${mirrors.length} ABBA pairs: median of the pairs' ratios rps ${mid(ratios('rps')).toFixed(3)}, p50 ${mid(ratios('p50')).toFixed(3)}; ratio of the medians rps ${(m.rps / d.rps).toFixed(3)}, p50 ${(m.p50 / d.p50).toFixed(3)}`,
      );
      const each = (xs: Figures[]) => xs.map((f) => `${f.rps.toFixed(0)}/${f.p50.toFixed(3)}`).join(' ');
      out.push(`${''.padEnd(34)} pairs (req/s / p50 ms): direct ${each(directs)}; mirrored ${each(mirrors)}`);
      out.push(`${''.padEnd(34)} copies at the local server per load: ${mirrors.map((r) => `${r.copies}/${PER_LOAD} (+${r.lagMs} ms)`).join(', ')}`);
    };
    mirrorRows('unpinned', unpinned, 'every process on every core');
    if (pinned)
      mirrorRows(
        'pinned',
        pinned,
        `target, twin, client and agent containers on cpus ${pin!.target} (docker update --cpuset-cpus), CLI/intproxy and local server on cpus ${pin!.local} (taskset)`,
      );
    out.push(row('filtered steal, 1 shared session', filtered1));
    out.push(row('filtered steal, 4 shared sessions', filtered4));
    out.push(
      `load average after: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await removeTestResources(RUN_ID);
    await network.remove();
  }
}

await main();
