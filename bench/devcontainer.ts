/**
 * `npm run bench:devcontainer`: what the devcontainer feature costs, each figure against the direct
 * path in the same run.
 *  1. Process start with the layer preloaded and no live session (the state of a dev container
 *     whose session is down): posix_spawn + waitpid of /bin/true, in turns (bench/spawn-cost.py).
 *     On this host through LD_PRELOAD: without the layer, with it and no session file, with it and
 *     a stale session file (nobody holds its lock; MIRRORD_SESSION_FILE points the layer at it).
 *     In a container of the tools image through /etc/ld.so.preload, as the feature writes it:
 *     without, and with it and no session. BENCH_SPAWNS (3000) rounds.
 *  2. `devcontainer up` of the same workspace with and without the feature, on the same local
 *     image, the target a Docker container: the first round builds the feature's image (cold), the
 *     next ones recreate the container (--remove-existing-container: warm, the session starts
 *     anew). BENCH_DEVC_ROUNDS (3) rounds, in turns. BENCH_DEVC_SKIP_UP=1 measures only part 1.
 */
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encodeSessionFile } from '../src/devcontainer/session-file.js';
import { docker, RUN_ID, runContainer, TEST_LABEL, toolsImage } from '../test/helpers/docker-fixtures.js';
import { median } from './timing.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAYER = path.join(ROOT, 'layer/build/libmirrord_layer.so');
const DEVCONTAINER = path.join(ROOT, 'node_modules/.bin/devcontainer');
const SPAWNS = Number(process.env.BENCH_SPAWNS ?? 3000);
const ROUNDS = Math.max(2, Number(process.env.BENCH_DEVC_ROUNDS ?? 3));
const run = promisify(execFile);

function medians(r: ReturnType<typeof spawnSync>): Record<string, number> {
  if (r.status !== 0) throw new Error(`spawn-cost.py failed: ${String(r.stderr)}`);
  const us = JSON.parse(String(r.stdout)) as Record<string, number[]>;
  return Object.fromEntries(Object.entries(us).map(([k, v]) => [k, median(v)]));
}

/** On this host, the layer through LD_PRELOAD. */
function spawnCostHere(dir: string): Record<string, number> {
  const stale = path.join(dir, 'stale-session');
  writeFileSync(stale, encodeSessionFile({ settings: { MIRRORD_LAYER_ADDR: '127.0.0.1:9' }, cliExe: '', env: {} }));
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MIRRORD_') && k !== 'LD_PRELOAD') base[k] = v;
  const variants = {
    without: { env: base },
    'layer, no session file': { env: { ...base, LD_PRELOAD: LAYER, MIRRORD_SESSION_FILE: path.join(dir, 'none') } },
    'layer, stale session file': { env: { ...base, LD_PRELOAD: LAYER, MIRRORD_SESSION_FILE: stale } },
  };
  return medians(
    spawnSync('python3', [path.join(ROOT, 'bench/spawn-cost.py'), '/bin/true', String(SPAWNS)], {
      input: JSON.stringify(variants),
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    }),
  );
}

/** In a container of the tools image, the layer through /etc/ld.so.preload, as the feature puts it (no session file at /run/mirrord/session). */
async function spawnCostInContainer(): Promise<Record<string, number>> {
  const image = await toolsImage();
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  const variants = { without: { env, preload: null }, 'ld.so.preload, no session': { env, preload: '/mirrord/libmirrord_layer.so\n' } };
  const args = ['run', '--rm', '-i', '-v', `${path.dirname(LAYER)}:/mirrord:ro`, '-v', `${path.join(ROOT, 'bench')}:/bench:ro`, image];
  return medians(
    spawnSync('docker', [...args, 'python3', '/bench/spawn-cost.py', '/bin/true', String(SPAWNS)], {
      input: JSON.stringify(variants),
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    }),
  );
}

function printSpawn(title: string, spawn: Record<string, number>): void {
  console.log(title);
  const direct = spawn.without!;
  for (const [name, us] of Object.entries(spawn))
    console.log(
      `  ${name.padEnd(28)} ${us.toFixed(0).padStart(6)}${name === 'without' ? '' : `   +${(us - direct).toFixed(0)} µs (x${(us / direct).toFixed(2)})`}`,
    );
}

async function up(dir: string, label: string): Promise<number> {
  const t0 = Date.now();
  await run(
    DEVCONTAINER,
    ['up', '--workspace-folder', dir, '--buildkit', 'never', '--update-remote-user-uid-default', 'never', '--remove-existing-container', '--id-label', label],
    { maxBuffer: 64 << 20, timeout: 300_000 },
  );
  return Date.now() - t0;
}

async function upCost(dir: string): Promise<{ cold: [number, number]; warm: [number, number] }> {
  execFileSyncQuiet(process.execPath, ['scripts/build-sea.mjs', '--if-stale']);
  execFileSyncQuiet(process.execPath, ['scripts/build-feature.mjs']);
  const image = await toolsImage();
  const target = await runContainer({ name: 'bench-devc-target', env: { BENCH: '1' }, cmd: ['sleep', 'infinity'] });
  const label = (name: string) => `dev.mirrord.devcontainer-test=bench-${name}-${RUN_ID}`;
  const base = { image, runArgs: ['--label', `${TEST_LABEL}=${RUN_ID}`], mounts: ['source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind'] };
  const plain = path.join(dir, 'plain');
  const feature = path.join(dir, 'feature');
  for (const [ws, config] of [
    [plain, base],
    [feature, { ...base, features: { './mirrord': { target: `docker/${target.name}` } } }],
  ] as const) {
    mkdirSync(path.join(ws, '.devcontainer'), { recursive: true });
    writeFileSync(path.join(ws, '.devcontainer/devcontainer.json'), JSON.stringify(config));
  }
  cpSync(path.join(ROOT, 'dist/devcontainer-feature/src/mirrord'), path.join(feature, '.devcontainer/mirrord'), { recursive: true });
  const times: Array<[number, number]> = [];
  const images = new Set<string>();
  try {
    for (let i = 0; i < ROUNDS; i++) times.push([await up(plain, label('plain')), await up(feature, label('feature'))]);
  } finally {
    const d = docker();
    for (const c of await d.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN_ID}`] } })) {
      if (c.Image.startsWith('vsc-')) images.add(c.Image);
      await d
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    }
    for (const i of images)
      await d
        .getImage(i)
        .remove({ force: true })
        .catch(() => undefined);
    await target.remove().catch(() => undefined);
  }
  const warm = times.slice(1);
  return { cold: times[0]!, warm: [median(warm.map((t) => t[0])), median(warm.map((t) => t[1]))] };
}

function execFileSyncQuiet(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-devc-'));
try {
  printSpawn(`process start (posix_spawn + waitpid of /bin/true) on this host, LD_PRELOAD, median of ${SPAWNS} in turns, µs`, spawnCostHere(dir));
  printSpawn(`the same in a container, /etc/ld.so.preload, median of ${SPAWNS} in turns, µs`, await spawnCostInContainer());
  if (!process.env.BENCH_DEVC_SKIP_UP) {
    const { cold, warm } = await upCost(dir);
    console.log(`devcontainer up, same image, ms (${ROUNDS} rounds in turns)`);
    console.log(`  ${''.padEnd(34)} ${'without'.padStart(8)} ${'with the feature'.padStart(17)}`);
    console.log(`  ${'first (image build; session start)'.padEnd(34)} ${String(cold[0]).padStart(8)} ${String(cold[1]).padStart(17)}`);
    console.log(`  ${'recreated, median'.padEnd(34)} ${String(warm[0]).padStart(8)} ${String(warm[1]).padStart(17)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
