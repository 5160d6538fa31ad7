/**
 * `npm run bench:container`: what container mode costs at start, same run, same image.
 * - plain: `docker run --rm IMAGE true`,
 * - mirrord: `mirrord container -t docker/TARGET -- docker run --rm IMAGE true` (agent, sidecar,
 *   mounted-file sync of a small volume, mirrord-init),
 * - mirrord with container.capture = namespace (adds iptables rules and the capture helper).
 * Each is timed from launch to exit; medians of BENCH_CONTAINER_ROUNDS (default 7), alternating the
 * variants so a slow moment of the engine hits all of them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, prepareImages, timed } from './timing.js';
import { RUN_ID, createVolume, removeTestResources, runContainer } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_CONTAINER_ROUNDS ?? 7);

async function main(): Promise<void> {
  const image = await prepareImages();
  const volume = await createVolume('mirrord-bench-ct');
  const cfgDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-ct-'));
  const captureCfg = path.join(cfgDir, 'capture.json');
  writeFileSync(captureCfg, JSON.stringify({ container: { capture: 'namespace' } }));
  try {
    const target = await runContainer({
      name: 'bench-ct-target',
      binds: [`${volume.name}:/data`],
      cmd: ['sh', '-c', 'echo "{\\"k\\":1}" > /data/settings.json && echo ready && exec sleep 100000'],
      waitFor: { log: /ready/ },
    });
    const run = ['run', '--rm', image, 'true'];
    const variants: Array<[string, () => number]> = [
      ['docker run --rm IMAGE true', () => timed('docker', run)],
      ['mirrord container ... (default)', () => timed(process.execPath, [cli, 'container', '-t', `docker/${target.name}`, '--', 'docker', ...run])],
      [
        'mirrord container ... (capture: namespace)',
        () => timed(process.execPath, [cli, 'container', '-f', captureCfg, '-t', `docker/${target.name}`, '--', 'docker', ...run]),
      ],
    ];
    // One warm-up of each: the first run may build an image or fill the engine's caches.
    for (const [, f] of variants) f();
    const times = variants.map(() => [] as number[]);
    for (let i = 0; i < ROUNDS; i++) variants.forEach(([, f], k) => times[k]!.push(f()));
    const plain = median(times[0]!);
    const w = Math.max(...variants.map(([n]) => n.length));
    process.stdout.write(`\nmirrord bench:container (median of ${ROUNDS} runs each, launch to exit, same run, image ${image})\n`);
    process.stdout.write(`${'command'.padEnd(w)}  ${'median ms'.padStart(10)}  ${'min ms'.padStart(8)}  ${'max ms'.padStart(8)}  ratio to plain\n`);
    variants.forEach(([name], k) => {
      const xs = times[k]!;
      const m = median(xs);
      process.stdout.write(
        `${name.padEnd(w)}  ${m.toFixed(0).padStart(10)}  ${Math.min(...xs)
          .toFixed(0)
          .padStart(8)}  ${Math.max(...xs)
          .toFixed(0)
          .padStart(8)}  ${(m / plain).toFixed(2)}x (+${(m - plain).toFixed(0)} ms)\n`,
      );
    });
  } finally {
    await removeTestResources(RUN_ID);
    await volume.remove();
    rmSync(cfgDir, { recursive: true, force: true });
  }
}

await main();
