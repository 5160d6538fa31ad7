/**
 * `npm run bench:memory`: what 1,000 concurrent tunnelled connections cost the agent. A program under
 * `mirrord exec -t docker/TARGET` opens BENCH_CONNECTIONS (1000) connections at once through the
 * target to a sink container, sends 1 KiB on each and waits for its echo, then holds them all open
 * while the agent's resident memory is read (VmRSS and its peak VmHWM from /proc of the agent's
 * process, and the container's memory as `docker stats` reports it), next to the same agent idle
 * (the session is up, nothing connected yet). Every connection that fails to open, to echo or to
 * stay open is counted: the figure holds only with 0 failures.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { createLogger } from '../common/log.js';
import { agentImageRecipe } from '../src/images/recipes.js';
import { ensureImage } from '../src/images/build.js';
import { createProgress } from '../src/progress.js';
import { LABEL_AGENT, LABEL_TARGET } from '../src/platforms/docker/labels.js';
import { RUN_ID, createNetwork, docker, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const serverCode = readFileSync(new URL('./tcp-server.mjs', import.meta.url), 'utf8');
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 1000);
const MiB = 1024 * 1024;

// The program: waits for `go` files so the bench can read the agent between its phases.
const PROGRAM = `
import net from 'node:net';
import fs from 'node:fs';
const [host, port, n, go1, go2] = process.argv.slice(2);
const until = async (f) => { while (!fs.existsSync(f)) await new Promise((r) => setTimeout(r, 50)); };
console.log('start');
await until(go1);
let failures = 0, holdFailures = 0, holding = false;
const sockets = [];
const msg = Buffer.alloc(1024, 5);
await Promise.all(Array.from({ length: Number(n) }, () => new Promise((resolve) => {
  const s = net.connect({ host, port: Number(port) });
  sockets.push(s);
  let got = 0, done = false, lost = false;
  const fail = () => { if (lost) return; lost = true; if (!done) { done = true; failures++; resolve(); } else if (holding) holdFailures++; };
  s.on('error', fail);
  s.on('close', fail);
  s.on('connect', () => s.write(Buffer.concat([Buffer.from('E00000000'), msg])));
  s.on('data', (d) => { got += d.length; if (got >= msg.length && !done) { done = true; resolve(); } });
})));
holding = true;
console.log(JSON.stringify({ ready: Number(n) - failures, failures }));
await until(go2);
holding = false;
console.log(JSON.stringify({ holdFailures }));
for (const s of sockets) s.destroy();
process.exit(0);
`;

interface Sample {
  rssMiB: number;
  hwmMiB: number;
  statsMiB: number;
}

async function sampleAgent(targetId: string): Promise<Sample> {
  const d = docker();
  const [info] = await d.listContainers({ filters: { label: [`${LABEL_AGENT}=true`, `${LABEL_TARGET}=${targetId}`] } });
  if (!info) throw new Error('the session has no agent container');
  const c = d.getContainer(info.Id);
  const pid = (await c.inspect()).State.Pid;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const stats = (await c.stats({ stream: false })) as { memory_stats: { usage?: number; stats?: Record<string, number> } };
  const m = stats.memory_stats;
  // What `docker stats` shows: usage less the page cache (cgroup v1: total_inactive_file / cache).
  const cache = m.stats?.total_inactive_file ?? m.stats?.inactive_file ?? m.stats?.cache ?? 0;
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024, statsMiB: ((m.usage ?? 0) - cache) / MiB };
}

async function main(): Promise<void> {
  await ensureImage(docker(), agentImageRecipe(), { progress: createProgress(), log: createLogger('bench') });
  const network = await createNetwork('mirrord-bench-mem');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-mem-'));
  try {
    const sink = await runContainer({
      name: 'bench-mem-sink',
      network: network.name,
      cmd: ['node', '--input-type=module', '-e', serverCode],
      waitFor: { tcpPort: 7000 },
    });
    const target = await runContainer({ name: 'bench-mem-target', network: network.name, cmd: ['sleep', '100000'] });
    const ip = await sink.ip(network.name);
    const program = path.join(tmp, 'many.mjs');
    writeFileSync(program, PROGRAM);
    const go1 = path.join(tmp, 'go1');
    const go2 = path.join(tmp, 'go2');
    const child = spawn(
      process.execPath,
      [cli, 'exec', '-t', `docker/${target.id}`, '--', process.execPath, program, ip, '7000', String(CONNECTIONS), go1, go2],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, MIRRORD_LOG: 'error' },
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const next = async (): Promise<string> => {
      const r = await lines.next();
      if (r.done) throw new Error(`the program ended early (exit ${await exited}): ${stderr}`);
      return r.value;
    };
    if ((await next()) !== 'start') throw new Error('unexpected program output');
    const idle = await sampleAgent(target.id);
    writeFileSync(go1, '');
    const t0 = Date.now();
    const ready = JSON.parse(await next()) as { ready: number; failures: number };
    const openMs = Date.now() - t0;
    // Let the echoes' buffers go and the heap settle as it would in a long-lived session.
    await new Promise((r) => setTimeout(r, 2000));
    const loaded = await sampleAgent(target.id);
    writeFileSync(go2, '');
    const held = JSON.parse(await next()) as { holdFailures: number };
    const code = await exited;
    if (code !== 0) throw new Error(`mirrord exec exited with ${code}: ${stderr}`);
    if (existsSync(go2)) rmSync(go2);

    const f = (x: number) => x.toFixed(1).padStart(8);
    process.stdout.write(`\nAgent memory, ${CONNECTIONS} concurrent tunnelled connections (same session; MiB)\n`);
    process.stdout.write(`${''.padEnd(28)} ${'VmRSS'.padStart(8)} ${'VmHWM'.padStart(8)} ${'docker'.padStart(8)}\n`);
    process.stdout.write(`${'agent idle'.padEnd(28)} ${f(idle.rssMiB)} ${f(idle.hwmMiB)} ${f(idle.statsMiB)}\n`);
    process.stdout.write(`${`agent, ${ready.ready} connections open`.padEnd(28)} ${f(loaded.rssMiB)} ${f(loaded.hwmMiB)} ${f(loaded.statsMiB)}\n`);
    process.stdout.write(
      `per connection ${(((loaded.rssMiB - idle.rssMiB) * 1024) / CONNECTIONS).toFixed(1)} KiB; opened in ${openMs} ms; failures: ${ready.failures} to open or echo, ${held.holdFailures} while held\n`,
    );
    if (ready.failures + held.holdFailures > 0) process.exitCode = 1;
  } finally {
    await removeTestResources(RUN_ID);
    await network.remove();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
