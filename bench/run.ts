/**
 * `npm run bench`: figures of the tunnel against a direct connection measured in the same run.
 * Direct = the host talks to the neighbour container's IP over the Docker bridge; mirrord = the same
 * client program under `mirrord exec -t docker/TARGET`, so its connection leaves from the target,
 * on both data paths (docs/fast-path.md): fast (a socket made in the target, the default where it
 * works) and stream (MIRRORD_AGENT_FD_PASSING=off: bytes through the intproxy and the agent link).
 *
 * CPU s/GiB: CPU seconds of every process on the data path (client, CLI with its intproxy, agent
 * container, dockerd, sink container; bench/cpu.ts) for BENCH_CPU_MIB (direct, fast; the stream:
 * BENCH_MIB) minus the same for BENCH_SMALL_MIB, over the difference: the cost of the bytes alone,
 * without starting a session.
 *
 * Container mode (rows `container: ...`): the same client inside a container, direct on the bench
 * network against `mirrord container -- docker run` of it on both paths; throughput and round trip.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/log.js';
import { agentImageRecipe } from '../src/images/recipes.js';
import { ensureImage } from '../src/images/build.js';
import { createProgress } from '../src/progress.js';
import { RUN_ID, createNetwork, docker, removeTestResources, runContainer, toolsImage } from '../test/helpers/docker-fixtures.js';
import { containerCpu, dockerdCpu, waitedChildrenCpu, watchAgents } from './cpu.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const client = fileURLToPath(new URL('./tcp-client.mjs', import.meta.url));
const serverCode = readFileSync(new URL('./tcp-server.mjs', import.meta.url), 'utf8');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MIB = Number(process.env.BENCH_MIB ?? 256);
const SMALL_MIB = Number(process.env.BENCH_SMALL_MIB ?? 16);
/** Paths at direct speed move more bytes for their CPU figure: a session's start varies by tenths of a second. */
const CPU_MIB = Number(process.env.BENCH_CPU_MIB ?? 1024);
const ECHOES = Number(process.env.BENCH_ECHOES ?? 2000);

type Path = 'direct' | 'fast' | 'stream';
const PATHS: Path[] = ['direct', 'fast', 'stream'];

/** Runs to the end; stdout, and the CPU seconds of everything on the data path meanwhile. */
async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, sinkId: string): Promise<{ out: string; err: string; cpu: number }> {
  const before = { children: waitedChildrenCpu(), dockerd: dockerdCpu(), sink: containerCpu(sinkId) ?? 0 };
  const agents = watchAgents();
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const agentCpu = agents.stop();
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err}`);
  const cpu = waitedChildrenCpu() - before.children + (dockerdCpu() - before.dockerd) + ((containerCpu(sinkId) ?? 0) - before.sink) + agentCpu;
  return { out: out.trim().split('\n').pop()!, err, cpu };
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
    const runOn = async (p: Path, args: string[]) => {
      if (p === 'direct') return run(process.execPath, [client, ...args], {}, sink.id);
      const r = await run(
        process.execPath,
        [cli, 'exec', '-t', `docker/${target.name}`, '--', process.execPath, client, ...args],
        {
          MIRRORD_LOG: 'info',
          MIRRORD_AGENT_FD_PASSING: p === 'fast' ? 'auto' : 'off',
        },
        sink.id,
      );
      // The label must be the truth: a fast run that fell back would report the stream's figures.
      const used = /data path: (fast|stream)/.exec(r.err)?.[1];
      if (used !== p) throw new Error(`asked for the ${p} path, the session used ${used ?? 'an unknown one'}: ${r.err.trim()}`);
      return r;
    };
    const measure = async (p: Path, args: string[], key: string) => {
      const xs: number[] = [];
      const cpus: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const r = await runOn(p, args);
        xs.push((JSON.parse(r.out) as Record<string, number>)[key]!);
        cpus.push(r.cpu);
      }
      return { value: median(xs), cpu: median(cpus) };
    };

    const rows: Array<[string, Record<Path, number>, string]> = [];
    const ratios = (v: Record<Path, number>) => `fast ${(v.fast / v.direct).toFixed(2)}, stream ${(v.stream / v.direct).toFixed(2)} of direct`;
    for (const mode of ['upload', 'download'] as const) {
      const speed = {} as Record<Path, number>;
      const cpuPerGiB = {} as Record<Path, number>;
      for (const p of PATHS) {
        const big = await measure(p, [mode, ip, '7000', String(MIB)], 'mbps');
        const small = await measure(p, [mode, ip, '7000', String(SMALL_MIB)], 'mbps');
        speed[p] = big.value;
        const cpuMib = p === 'stream' ? MIB : CPU_MIB;
        const cpuBig = cpuMib === MIB ? big : await measure(p, [mode, ip, '7000', String(cpuMib)], 'mbps');
        cpuPerGiB[p] = ((cpuBig.cpu - small.cpu) / (cpuMib - SMALL_MIB)) * 1024;
      }
      rows.push([`TCP ${mode} MiB/s (${MIB} MiB)`, speed, ratios(speed)]);
      rows.push([
        `TCP ${mode} CPU s/GiB`,
        cpuPerGiB,
        `fast ${(cpuPerGiB.fast - cpuPerGiB.direct).toFixed(2)}, stream ${(cpuPerGiB.stream - cpuPerGiB.direct).toFixed(2)} s/GiB over direct`,
      ]);
    }
    for (const key of ['p50', 'p99'] as const) {
      const v = {} as Record<Path, number>;
      for (const p of PATHS) v[p] = (await measure(p, ['rtt', ip, '7000', String(ECHOES)], key)).value;
      rows.push([
        `32-byte round trip ${key} ms (${ECHOES}x)`,
        v,
        `added: fast ${(v.fast - v.direct).toFixed(3)} ms, stream ${(v.stream - v.direct).toFixed(3)} ms`,
      ]);
    }

    // Container mode: the same client in a container of the tools image. Direct = that container on
    // the bench network talking to the sink; fast and stream = `mirrord container` of the same
    // `docker run` (the user's container joins the sidecar, its connections leave from the target).
    const tools = await toolsImage();
    const benchDir = path.dirname(client);
    const inContainer = ['--rm', '-v', `${benchDir}:/bench:ro`, tools, 'node', '/bench/tcp-client.mjs'];
    // The client's own files are local; any other path would be read from the target.
    const localBench = path.join(mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-')), 'mirrord.json');
    writeFileSync(localBench, JSON.stringify({ feature: { fs: { local: ['^/bench(/|$)'] } } }));
    const runInContainer = async (p: Path, args: string[]) => {
      if (p === 'direct') return run('docker', ['run', '--network', network.name, ...inContainer, ...args], {}, sink.id);
      const r = await run(
        process.execPath,
        [cli, 'container', '-f', localBench, '-t', `docker/${target.name}`, '--', 'docker', 'run', ...inContainer, ...args],
        { MIRRORD_LOG: 'info', MIRRORD_AGENT_FD_PASSING: p === 'fast' ? 'auto' : 'off' },
        sink.id,
      );
      const used = /data path: (fast|stream)/.exec(r.err)?.[1] ?? 'stream';
      if (used !== p) throw new Error(`container mode: asked for the ${p} path, the session used ${used}: ${r.err.trim()}`);
      return r;
    };
    const measureInContainer = async (p: Path, args: string[], key: string) => {
      const xs: number[] = [];
      for (let i = 0; i < ROUNDS; i++) xs.push((JSON.parse((await runInContainer(p, args)).out) as Record<string, number>)[key]!);
      return median(xs);
    };
    for (const mode of ['upload', 'download'] as const) {
      const speed = {} as Record<Path, number>;
      for (const p of PATHS) speed[p] = await measureInContainer(p, [mode, ip, '7000', String(MIB)], 'mbps');
      rows.push([`container: TCP ${mode} MiB/s (${MIB} MiB)`, speed, ratios(speed)]);
    }
    {
      const v = {} as Record<Path, number>;
      for (const p of PATHS) v[p] = await measureInContainer(p, ['rtt', ip, '7000', String(ECHOES)], 'p50');
      rows.push([
        `container: 32-byte round trip p50 ms (${ECHOES}x)`,
        v,
        `added: fast ${(v.fast - v.direct).toFixed(3)} ms, stream ${(v.stream - v.direct).toFixed(3)} ms`,
      ]);
    }

    // Time from launching the command to the program's first instruction (`date` prints its clock).
    const startOf = async (p: Path) => {
      const t0 = BigInt(Date.now()) * 1_000_000n;
      const r =
        p === 'direct'
          ? await run('date', ['+%s%N'], {}, sink.id)
          : await run(
              process.execPath,
              [cli, 'exec', '-t', `docker/${target.name}`, '--', 'date', '+%s%N'],
              { MIRRORD_AGENT_FD_PASSING: p === 'fast' ? 'auto' : 'off' },
              sink.id,
            );
      return Number(BigInt(r.out) - t0) / 1e6;
    };
    const start = {} as Record<Path, number>;
    for (const p of PATHS) {
      const xs: number[] = [];
      for (let i = 0; i < 5; i++) xs.push(await startOf(p));
      start[p] = median(xs);
    }
    rows.push([
      'start to first instruction ms',
      start,
      `mirrord exec adds: fast ${(start.fast - start.direct).toFixed(0)} ms, stream ${(start.stream - start.direct).toFixed(0)} ms`,
    ]);

    const w = Math.max(...rows.map((r) => r[0].length));
    process.stdout.write(`\nmirrord bench (median of ${ROUNDS} rounds; direct = host to container over the bridge, same run)\n`);
    process.stdout.write(`${'metric'.padEnd(w)}  ${'direct'.padStart(10)}  ${'fast'.padStart(10)}  ${'stream'.padStart(10)}  comparison\n`);
    for (const [name, v, cmp] of rows) {
      process.stdout.write(
        `${name.padEnd(w)}  ${v.direct.toFixed(3).padStart(10)}  ${v.fast.toFixed(3).padStart(10)}  ${v.stream.toFixed(3).padStart(10)}  ${cmp}\n`,
      );
    }
  } finally {
    await removeTestResources(RUN_ID);
    await network.remove();
  }
}

await main();
