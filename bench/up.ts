/**
 * `npm run bench:up`: time from `mirrord up` to every service of a compose project running, for 1
 * and for 3 services with x-mirrord (each against the same Docker target), next to
 * `docker compose up --wait` of the same project without mirrord, same run. Both are timed with
 * `--wait` (return once every container runs), then torn down (`mirrord up down`, `compose down`,
 * not timed). Medians of BENCH_UP_ROUNDS (default 3), the variants alternating.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, prepareImages, timed } from './timing.js';
import { RUN_ID, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_UP_ROUNDS ?? 3);

function project(dir: string, n: number, image: string, target: string, marked: boolean): string {
  const file = path.join(dir, `${marked ? 'marked' : 'plain'}-${n}.yaml`);
  const services = Array.from({ length: n }, (_, i) =>
    [
      `  s${i}:`,
      `    image: ${image}`,
      '    pull_policy: never',
      ...(marked ? ['    x-mirrord:', `      target: docker/${target}`, '      default_mode: mirror'] : ['    init: true']),
      `    command: [python3, -m, http.server, '${8000 + i}']`,
    ].join('\n'),
  );
  writeFileSync(file, `services:\n${services.join('\n')}\n`);
  return file;
}

async function main(): Promise<void> {
  const image = await prepareImages();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-up-'));
  try {
    const target = await runContainer({ name: 'bench-up-target', cmd: ['sleep', 'infinity'] });
    for (const n of [1, 3]) {
      const plain = project(dir, n, image, target.name, false);
      const marked = project(dir, n, image, target.name, true);
      const key = `bench${n}`;
      const variants: Array<[string, () => number]> = [
        [
          `docker compose up --wait (${n})`,
          () => {
            const ms = timed('docker', ['compose', '-f', plain, '-p', `bench-plain-${n}`, 'up', '--wait', '-d']);
            timed('docker', ['compose', '-f', plain, '-p', `bench-plain-${n}`, 'down', '-t', '0']);
            return ms;
          },
        ],
        [
          `mirrord up --wait (${n} with x-mirrord)`,
          () => {
            const ms = timed(process.execPath, [cli, 'up', '--wait', '-k', key, '-f', marked, '-p', `bench-marked-${n}`]);
            timed(process.execPath, [cli, 'up', 'down', '-k', key, '--timeout', '2']);
            return ms;
          },
        ],
      ];
      for (const [, f] of variants) f();
      const times = new Map<string, number[]>(variants.map(([name]) => [name, []]));
      for (let r = 0; r < ROUNDS; r++) for (const [name, f] of variants) times.get(name)!.push(f());
      const base = median(times.get(variants[0]![0])!);
      for (const [name] of variants) {
        const m = median(times.get(name)!);
        console.log(`${name.padEnd(40)} ${(m / 1000).toFixed(2)} s  (x${(m / base).toFixed(2)} of compose)`);
      }
    }
  } finally {
    await removeTestResources(RUN_ID);
  }
}

await main();
