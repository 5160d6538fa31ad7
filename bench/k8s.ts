/**
 * Kubernetes session start: from `mirrord exec` being spawned to the program's first instruction
 * (it prints its own clock), against a pod of the test cluster with the agent image present, in job
 * and ephemeral modes, next to the same program started directly and to a Docker-target session.
 * Needs KUBECONFIG (test/cluster/up, or `npm run bench:k8s` starts and stops the test cluster).
 * MIRRORD_BENCH_ROUNDS (default 5) sets the rounds per mode; the median is printed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages } from '../test/helpers/k8s.js';
import { deployApp } from '../test/helpers/k8s-app.js';
import { removeTestResources, RUN_ID, runContainer, toolsImage } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const ROUNDS = Number(process.env.MIRRORD_BENCH_ROUNDS ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
// The program reports the wall clock at its start in ms; python3 is what every image and host has.
const PROGRAM = ['python3', '-c', 'import time; print(int(time.time() * 1000))'];

function startMs(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      const at = Number(out.trim().split('\n').pop());
      if (code !== 0 || !Number.isFinite(at)) reject(new Error(`${args.join(' ')} failed (${code}): ${err.slice(-500)}`));
      else resolve(at - t0);
    });
  });
}

async function rounds(args: string[]): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) xs.push(await startMs(args));
  return median(xs);
}

const images = await k8sTestImages();
await ensureImagesLoaded(images);
const ns = await createTestNamespace('mirrord-bench');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-'));
try {
  const app = await deployApp(ns.name, images[0]!, images[1]!);
  const pod = `pod/${app.appPod.metadata!.name}`;
  const eph = path.join(tmp, 'ephemeral.json');
  writeFileSync(eph, JSON.stringify({ agent: { ephemeral: true } }));
  const target = await runContainer({ image: await toolsImage(), name: 'bench-k8s-target', cmd: ['sleep', 'infinity'] });
  const direct = await rounds(PROGRAM);
  const rows: Array<[string, number]> = [
    ['program started directly', direct],
    ['mirrord exec -t docker/NAME', await rounds([process.execPath, cli, 'exec', '-t', `docker/${target.name}`, '--', ...PROGRAM])],
    ['mirrord exec -t pod/NAME (job mode)', await rounds([process.execPath, cli, 'exec', '-n', ns.name, '-t', pod, '--', ...PROGRAM])],
    ['mirrord exec -t pod/NAME (ephemeral)', await rounds([process.execPath, cli, 'exec', '-f', eph, '-n', ns.name, '-t', pod, '--', ...PROGRAM])],
  ];
  console.log(`\nSession start to the program's first instruction (median of ${ROUNDS}, same run):`);
  for (const [name, ms] of rows) console.log(`  ${name.padEnd(40)} ${String(ms).padStart(6)} ms   ratio ${(ms / direct).toFixed(1)} vs direct`);
} finally {
  await ns.remove();
  await removeTestResources(RUN_ID);
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
