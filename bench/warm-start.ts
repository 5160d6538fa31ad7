/**
 * Session start with a shared agent, same run: the time from launching a command to the program's
 * first instruction (`date +%s%N` prints its clock), median of BENCH_START_ROUNDS (5), for
 * - the program started directly, and the CLI's own start (`mirrord --version`, launch to exit),
 * - `mirrord exec` with an agent of its own (agent.shared false, the default),
 * - `mirrord exec` with agent.shared and no live agent (it starts the shared agent: a cold start),
 * - `mirrord exec` with agent.shared joining a warm agent that another session keeps alive.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { RUN_ID, listContainers, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_START_ROUNDS ?? 5);
const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-start-'));
const shared = path.join(dir, 'shared.json');
writeFileSync(shared, JSON.stringify({ agent: { shared: true, ttl: 0 }, feature: { network: { incoming: 'off' } } }));
const keep = path.join(dir, 'keep.json');
writeFileSync(keep, JSON.stringify({ agent: { shared: true, ttl: 0 }, feature: { network: { incoming: 'off' } } }));

/** CPU ms of this process's waited-for children so far (cutime + cstime of /proc/self/stat). */
function childrenCpuMs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ').pop()!.split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100;
}

/** The CPU each row's command took, start to exit (CLI, intproxy, program): steadier than wall clock under load. */
const cpuOf = new Map<string, number[]>();

function startOf(argv: string[], row?: string): number {
  const c0 = childrenCpuMs();
  const t0 = BigInt(Date.now()) * 1_000_000n;
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, MIRRORD_LOG: 'error' } });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  if (row) cpuOf.set(row, [...(cpuOf.get(row) ?? []), childrenCpuMs() - c0]);
  return Number(BigInt(r.stdout.trim().split('\n').pop()!) - t0) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function sharedGone(targetId: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await listContainers(`dev.mirrord.target=${targetId}`)).every((c) => !c.Labels['dev.mirrord.shared'])) return;
    await sleep(100);
  }
  throw new Error('the shared agent did not leave');
}

async function main(): Promise<void> {
  const target = await runContainer({ name: 'bench-start', cmd: ['sleep', '100000'] });
  try {
    const exec = (cfg?: string) => [process.execPath, cli, 'exec', '-t', `docker/${target.name}`, ...(cfg ? ['-f', cfg] : []), '--', 'date', '+%s%N'];
    startOf(exec()); // the agent image is present and warm in the page cache from here on
    const direct = median(Array.from({ length: ROUNDS }, () => startOf(['date', '+%s%N'])));
    // The CLI's own start: launching it until it has printed its version and exited.
    const cliOnly = median(
      Array.from({ length: ROUNDS }, () => {
        const t0 = Date.now();
        spawnSync(process.execPath, [cli, '--version']);
        return Date.now() - t0;
      }),
    );
    const own = median(Array.from({ length: ROUNDS }, () => startOf(exec(), 'own')));
    const cold: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await sharedGone(target.id);
      cold.push(startOf(exec(shared), 'cold'));
    }
    // A first session keeps the shared agent warm while the second ones start.
    const first = spawn(process.execPath, [cli, 'exec', '-t', `docker/${target.name}`, '-f', keep, '--', 'sleep', '600'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && (await listContainers(`dev.mirrord.target=${target.id}`)).every((c) => !c.Labels['dev.mirrord.shared']); i++) await sleep(100);
      await sleep(1000);
      const warm = median(Array.from({ length: ROUNDS }, () => startOf(exec(shared), 'warm')));
      const rows: Array<[string, number, string?]> = [
        ['program started directly', direct],
        ['mirrord --version (the CLI alone, start to exit)', cliOnly],
        ['mirrord exec, an agent of its own (agent.shared false)', own, 'own'],
        ['mirrord exec, agent.shared, no live agent (cold)', median(cold), 'cold'],
        ['mirrord exec, agent.shared, joining a warm agent', warm, 'warm'],
      ];
      const w = Math.max(...rows.map((r) => r[0].length));
      console.log(`start to first instruction, median of ${ROUNDS} (ms; load average ${os.loadavg()[0]!.toFixed(1)}); CPU ms of the command, start to exit:`);
      for (const [name, ms, key] of rows) {
        const cpu = key ? `  CPU ${median(cpuOf.get(key)!).toFixed(0).padStart(5)}` : '';
        console.log(`  ${name.padEnd(w)}  ${ms.toFixed(0).padStart(6)}${cpu}`);
      }
    } finally {
      first.kill('SIGTERM');
    }
  } finally {
    await target.remove();
    await removeTestResources(RUN_ID);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
