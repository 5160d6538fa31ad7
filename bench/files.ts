/**
 * `npm run bench:files` (also part of `npm run bench`): remote files against local files, measured
 * in the same run by the same client (bench/files-client.py): read throughput of a large file,
 * reading a 10,000-line file line by line, and the stat round trip.
 * BENCH_FILE_MIB (default 64) and BENCH_ROUNDS (3) tune it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/log.js';
import { agentImageRecipe } from '../src/images/recipes.js';
import { ensureImage } from '../src/images/build.js';
import { createProgress } from '../src/progress.js';
import { RUN_ID, docker, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const client = fileURLToPath(new URL('./files-client.py', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MIB = Number(process.env.BENCH_FILE_MIB ?? 64);
const STATS = 500;
const LINES = Array.from({ length: 10_000 }, (_, i) => `line ${i} of the ten thousand line file`).join('\n') + '\n';

function run(cmd: string, args: string[]): Record<string, number> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, MIRRORD_LOG: 'error' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchFiles(): Promise<Array<[string, number, number, string]>> {
  await ensureImage(docker(), agentImageRecipe(), { progress: createProgress(), log: createLogger('bench') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-files-'));
  const makeLines = "import sys; sys.stdout.write(''.join('line %d of the ten thousand line file\\n' % i for i in range(10000)))";
  const target = await runContainer({
    name: 'bench-files-target',
    cmd: [
      'sh',
      '-c',
      `mkdir -p /srv/bench && head -c ${MIB}M /dev/urandom > /srv/bench/big.bin && python3 -c "${makeLines}" > /srv/bench/lines.txt && exec sleep 100000`,
    ],
  });
  try {
    for (let i = 0; i < 300; i++) {
      const r = await target.exec([
        'sh',
        '-c',
        `test $(stat -c %s /srv/bench/big.bin 2>/dev/null || echo 0) -eq ${MIB * 1048576} && test -s /srv/bench/lines.txt && echo ok`,
      ]);
      if (r.stdout.includes('ok')) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    writeFileSync(path.join(dir, 'big.bin'), randomBytes(MIB * 1048576));
    writeFileSync(path.join(dir, 'lines.txt'), LINES);
    const local = (args: string[]) => run('python3', [client, ...args]);
    const remote = (args: string[]) => run(process.execPath, [cli, 'exec', '-t', `docker/${target.name}`, '--', 'python3', client, ...args]);
    const measure = (f: (a: string[]) => Record<string, number>, args: string[], key: string) => median(Array.from({ length: ROUNDS }, () => f(args)[key]!));
    const rows: Array<[string, number, number, string]> = [];
    const lr = measure(local, ['read', path.join(dir, 'big.bin')], 'mbps');
    const rr = measure(remote, ['read', '/srv/bench/big.bin'], 'mbps');
    rows.push([`read ${MIB} MiB file, MiB/s`, lr, rr, `ratio ${(rr / lr).toFixed(3)}`]);
    const ll = measure(local, ['lines', path.join(dir, 'lines.txt')], 'ms');
    const rl = measure(remote, ['lines', '/srv/bench/lines.txt'], 'ms');
    rows.push(['10,000 lines line by line, ms', ll, rl, `added ${(rl - ll).toFixed(1)} ms`]);
    const ls = measure(local, ['stat', path.join(dir, 'lines.txt'), String(STATS)], 'us');
    const rs = measure(remote, ['stat', '/srv/bench/lines.txt', String(STATS)], 'us');
    rows.push([`stat round trip, us (${STATS}x)`, ls, rs, `added ${(rs - ls).toFixed(0)} us`]);
    return rows;
  } finally {
    await target.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printRows(rows: Array<[string, number, number, string]>): void {
  const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(3));
  console.log(`${'measure'.padEnd(36)} ${'local'.padStart(10)} ${'mirrord'.padStart(10)}  note`);
  for (const [name, a, b, note] of rows) console.log(`${name.padEnd(36)} ${fmt(a).padStart(10)} ${fmt(b).padStart(10)}  ${note}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  benchFiles()
    .then(printRows)
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    })
    .finally(() => removeTestResources(RUN_ID).catch(() => undefined));
}
