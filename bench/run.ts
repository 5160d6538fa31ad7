/**
 * `npm run bench`: figures of the tunnel against a direct connection measured in the same run.
 * Direct = the host talks to the neighbour container's IP over the Docker bridge; tunnel = the same
 * client program under `mirrord exec -t docker/TARGET`, so its connection leaves from the target.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/log.js';
import { agentImageRecipe } from '../src/images/recipes.js';
import { ensureImage } from '../src/images/build.js';
import { createProgress } from '../src/progress.js';
import { RUN_ID, createNetwork, docker, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const client = fileURLToPath(new URL('./tcp-client.mjs', import.meta.url));
const serverCode = readFileSync(new URL('./tcp-server.mjs', import.meta.url), 'utf8');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MIB = Number(process.env.BENCH_MIB ?? 256);
const ECHOES = Number(process.env.BENCH_ECHOES ?? 2000);

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, MIRRORD_LOG: 'error' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await ensureImage(docker(), agentImageRecipe(), { progress: createProgress(), log: createLogger('bench') });
  const network = await createNetwork('mirrord-bench');
  try {
    const sink = await runContainer({
      name: 'bench-sink',
      network: network.name,
      cmd: ['node', '--input-type=module', '-e', serverCode],
      waitFor: { tcpPort: 7000 },
    });
    const target = await runContainer({ name: 'bench-target', network: network.name, cmd: ['sleep', '100000'] });
    const ip = await sink.ip(network.name);
    const viaMirrord = (args: string[]) => run(process.execPath, [cli, 'exec', '-t', `docker/${target.name}`, '--', process.execPath, client, ...args]);
    const direct = (args: string[]) => run(process.execPath, [client, ...args]);
    const measure = (f: (a: string[]) => string, args: string[], key: string) =>
      median(Array.from({ length: ROUNDS }, () => (JSON.parse(f(args)) as Record<string, number>)[key]!));

    const rows: Array<[string, number, number, string]> = [];
    for (const mode of ['upload', 'download'] as const) {
      const d = measure(direct, [mode, ip, '7000', String(MIB)], 'mbps');
      const t = measure(viaMirrord, [mode, ip, '7000', String(MIB)], 'mbps');
      rows.push([`TCP ${mode} MiB/s (${MIB} MiB)`, d, t, `ratio ${(t / d).toFixed(2)}`]);
    }
    const dp50 = measure(direct, ['rtt', ip, '7000', String(ECHOES)], 'p50');
    const tp50 = measure(viaMirrord, ['rtt', ip, '7000', String(ECHOES)], 'p50');
    rows.push([`32-byte round trip p50 ms (${ECHOES}x)`, dp50, tp50, `added ${(tp50 - dp50).toFixed(3)} ms, ratio ${(tp50 / dp50).toFixed(2)}`]);
    const dp99 = measure(direct, ['rtt', ip, '7000', String(ECHOES)], 'p99');
    const tp99 = measure(viaMirrord, ['rtt', ip, '7000', String(ECHOES)], 'p99');
    rows.push([`32-byte round trip p99 ms`, dp99, tp99, `added ${(tp99 - dp99).toFixed(3)} ms`]);

    // Time from launching the command to the program's first instruction (`date` prints its clock).
    const startOf = (argv: string[]) => {
      const t0 = BigInt(Date.now()) * 1_000_000n;
      const printed = BigInt(run(argv[0]!, argv.slice(1)).split('\n').pop()!);
      return Number(printed - t0) / 1e6;
    };
    const ds = median(Array.from({ length: 5 }, () => startOf(['date', '+%s%N'])));
    const ts = median(Array.from({ length: 5 }, () => startOf([process.execPath, cli, 'exec', '-t', `docker/${target.name}`, '--', 'date', '+%s%N'])));
    rows.push(['start to first instruction ms', ds, ts, `mirrord exec adds ${(ts - ds).toFixed(0)} ms`]);

    const w = Math.max(...rows.map((r) => r[0].length));
    process.stdout.write(`\nmirrord bench (median of ${ROUNDS} rounds; direct = host to container over the bridge, same run)\n`);
    process.stdout.write(`${'metric'.padEnd(w)}  ${'direct'.padStart(10)}  ${'mirrord'.padStart(10)}  comparison\n`);
    for (const [name, d, t, cmp] of rows) {
      process.stdout.write(`${name.padEnd(w)}  ${d.toFixed(3).padStart(10)}  ${t.toFixed(3).padStart(10)}  ${cmp}\n`);
    }
  } finally {
    await removeTestResources(RUN_ID);
    await network.remove();
  }
}

await main();
