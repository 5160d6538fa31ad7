/**
 * Kubernetes session start: from `mirrord exec` being spawned to the program's first instruction
 * (it prints its own clock), against a pod of the test cluster with the agent image present, in job
 * and ephemeral modes, next to the same program started directly and to a Docker-target session,
 * and a session joining a warm shared agent (agent.shared, while another session keeps it alive).
 * Needs KUBECONFIG (test/cluster/up, or `npm run bench:k8s` starts and stops the test cluster).
 * MIRRORD_BENCH_ROUNDS (default 5) sets the rounds per mode; the median is printed.
 *
 * Then the stream: bench/tcp-client.mjs uploads and downloads BENCH_MIB (64) to a sink pod through
 * `kubectl port-forward` to the sink (the raw API server port-forward, the ceiling) and under
 * `mirrord exec -t pod/APP` to the sink pod's IP (the agent's link rides the same port-forward),
 * same run, median of BENCH_ROUNDS (3), with the CPU of kubectl's side (client and `kubectl
 * port-forward`) and of mirrord's (CLI and client, less a session without bytes).
 * BENCH_K8S_STREAM_ONLY=1 skips the session-start part; BENCH_K8S_WARM_ONLY=1 runs only the
 * program directly and the warm join. BENCH_K8S_TOP=1 prints the processes that used the most CPU
 * during each transfer; BENCH_K8S_PROFILE_DIR=DIR has each mirrord CLI write a CPU profile there.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, waitForReadyPods } from '../test/helpers/k8s.js';
import { deployApp } from '../test/helpers/k8s-app.js';
import { removeTestResources, RUN_ID, runContainer, toolsImage } from '../test/helpers/docker-fixtures.js';

const cli = fileURLToPath(new URL('../bin/mirrord.js', import.meta.url));
const client = fileURLToPath(new URL('./tcp-client.mjs', import.meta.url));
const serverCode = readFileSync(new URL('./tcp-server.mjs', import.meta.url), 'utf8');
const STREAM_MIB = Number(process.env.BENCH_MIB ?? 64);
const STREAM_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
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

/** The client's MiB/s, and the CPU seconds the command's processes used (bash's `time`). */
function transfer(args: string[]): { mbps: number; cpu: number; machine: number } {
  const m0 = machineCpu();
  const top0 = process.env.BENCH_K8S_TOP === '1' ? allProcessCpu() : undefined;
  const r = spawnSync('bash', ['-c', 'TIMEFORMAT="cpu %U %S"; time "$@"', 'bash', ...args], {
    encoding: 'utf8',
    env: { ...process.env, MIRRORD_LOG: 'error' },
  });
  if (top0) console.log(`    top CPU s (${args.slice(-3).join(' ')}): ${topCpu(top0, allProcessCpu())}`);
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-500)}`);
  const [, user, sys] = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr) ?? [];
  return { mbps: (JSON.parse(r.stdout.trim().split('\n').pop()!) as { mbps: number }).mbps, cpu: Number(user) + Number(sys), machine: machineCpu() - m0 };
}

/** CPU seconds the whole machine has been busy so far (/proc/stat; other work on it included). */
function machineCpu(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

/** Every process's CPU seconds so far, by pid, with its command line's first two words. */
function allProcessCpu(): Map<number, { name: string; cpu: number }> {
  const out = new Map<number, { name: string; cpu: number }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const name = readFileSync(`/proc/${d}/cmdline`, 'utf8')
        .split('\0')
        .slice(0, 2)
        .map((w) => path.basename(w))
        .join(' ');
      out.set(Number(d), { name, cpu: processCpu(Number(d)) });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** BENCH_K8S_TOP=1: the processes that used the most CPU between two allProcessCpu() snapshots. */
function topCpu(before: Map<number, { name: string; cpu: number }>, after: Map<number, { name: string; cpu: number }>): string {
  const rows = [...after].map(([pid, a]) => ({ name: a.name, cpu: a.cpu - (before.get(pid)?.cpu ?? 0) })).filter((r) => r.cpu >= 0.05);
  return rows
    .sort((a, b) => b.cpu - a.cpu)
    .slice(0, 10)
    .map((r) => `${r.name.slice(0, 40)} ${r.cpu.toFixed(2)}`)
    .join(' | ');
}

/** CPU seconds a running process has used so far (utime + stime of /proc/PID/stat, at 100 Hz). */
function processCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** `kubectl port-forward` to the pod's port; resolves with the local port once it forwards. */
function kubectlForward(ns: string, pod: string, port: number): Promise<{ port: number; cpu(): number; stop(): void }> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', ['port-forward', '-n', ns, `pod/${pod}`, `:${port}`, '--address', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ port: Number(m[1]), cpu: () => processCpu(child.pid!), stop: () => child.kill() });
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => reject(new Error(`kubectl port-forward exited with ${code}: ${out.slice(-500)}`)));
  });
}

async function streamRows(ns: string, appPod: string, tools: string): Promise<void> {
  const { core } = kube();
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'bench-sink', labels: { role: 'bench-sink' } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'sink',
            image: tools,
            imagePullPolicy: 'Never',
            command: ['node', '--input-type=module', '-e', serverCode],
            readinessProbe: { tcpSocket: { port: 7000 }, periodSeconds: 1 },
          },
        ],
      },
    },
  });
  const [sink] = await waitForReadyPods(ns, 'role=bench-sink', 1);
  const ip = sink!.status!.podIP!;
  const forward = await kubectlForward(ns, 'bench-sink', 7000);
  const gib = STREAM_MIB / 1024;
  // BENCH_K8S_PROFILE_DIR: the CLI of each mirrord run writes a V8 CPU profile there.
  const profile = process.env.BENCH_K8S_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_K8S_PROFILE_DIR}`] : [];
  const mirrord = (mode: string, mib: number) =>
    transfer([process.execPath, ...profile, cli, 'exec', '-n', ns, '-t', appPod, '--', process.execPath, client, mode, ip, '7000', String(mib)]);
  try {
    const medianOf = <T>(f: () => T) => Array.from({ length: STREAM_ROUNDS }, f);
    // The CPU a session costs without the bytes (an upload of 0 MiB), so that the link's own cost per
    // GiB can be told from the session's start.
    const idles = medianOf(() => mirrord('upload', 0));
    const idle = median(idles.map((x) => x.cpu));
    const idleMachine = median(idles.map((x) => x.machine));
    console.log(
      `\nTCP through the API server's port-forward (${STREAM_MIB} MiB, median of ${STREAM_ROUNDS}, same run; load average ${os.loadavg()[0]!.toFixed(1)}):`,
    );
    console.log('  (CPU s/GiB: kubectl = the client and the `kubectl port-forward` process; mirrord = CLI with its intproxy and the client,');
    console.log(`   the session's start (${idle.toFixed(2)} CPU s, an upload of 0 MiB) taken off)`);
    for (const mode of ['upload', 'download']) {
      const raws = medianOf(() => {
        const before = forward.cpu();
        const r = transfer([process.execPath, client, mode, '127.0.0.1', String(forward.port), String(STREAM_MIB)]);
        return { mbps: r.mbps, cpu: r.cpu + forward.cpu() - before, machine: r.machine };
      });
      const raw = {
        mbps: median(raws.map((x) => x.mbps)),
        cpuPerGiB: median(raws.map((x) => x.cpu)) / gib,
        machinePerGiB: median(raws.map((x) => x.machine)) / gib,
      };
      const vias = medianOf(() => mirrord(mode, STREAM_MIB));
      const via = {
        mbps: median(vias.map((x) => x.mbps)),
        cpuPerGiB: Math.max(0, median(vias.map((x) => x.cpu)) - idle) / gib,
        machinePerGiB: Math.max(0, median(vias.map((x) => x.machine)) - idleMachine) / gib,
      };
      console.log(
        `  ${mode.padEnd(8)} kubectl port-forward ${raw.mbps.toFixed(1).padStart(7)} MiB/s (${raw.cpuPerGiB.toFixed(1)} CPU s/GiB)   mirrord exec ${via.mbps.toFixed(1).padStart(7)} MiB/s (${via.cpuPerGiB.toFixed(1)} CPU s/GiB)   ratio ${(via.mbps / raw.mbps).toFixed(2)}   machine ${raw.machinePerGiB.toFixed(1)} / ${via.machinePerGiB.toFixed(1)} s/GiB   mirrord rounds [${vias.map((x) => x.mbps.toFixed(0)).join(' ')}], load ${os.loadavg()[0]!.toFixed(1)}`,
      );
    }
  } finally {
    forward.stop();
  }
}

/**
 * agent.shared (job mode): a first session keeps the target's shared agent alive while the measured
 * ones join it, so they skip the agent's Job and pod (issue 15, item 5: goal under 1 s). The first
 * of the measured sessions after the keeper is the same as the others: the keeper waits for the Job.
 */
async function warmJoinRows(ns: string, pod: string, tmp: string): Promise<Array<[string, number]>> {
  const shared = path.join(tmp, 'shared.json');
  writeFileSync(shared, JSON.stringify({ agent: { shared: true, ttl: 5 }, feature: { network: { incoming: 'off' } } }));
  const exec = [process.execPath, cli, 'exec', '-f', shared, '-n', ns, '-t', pod, '--'];
  const keeper = spawn(exec[0]!, [...exec.slice(1), 'sleep', '600'], { stdio: 'ignore', env: { ...process.env, MIRRORD_LOG: 'error' } });
  try {
    const { batch } = kube();
    const live = async () =>
      (await batch.listNamespacedJob({ namespace: ns, labelSelector: 'dev.mirrord/shared' })).items.some((j) => !j.status?.completionTime);
    for (let i = 0; i < 300 && !(await live()); i++) await new Promise((r) => setTimeout(r, 200));
    if (!(await live())) throw new Error('the keeper session started no shared agent Job');
    // The keeper's own session is up once a first join answers; that one is not counted.
    await startMs([...exec, ...PROGRAM]);
    return [['mirrord exec -t pod/NAME, agent.shared, joining a warm agent', await rounds([...exec, ...PROGRAM])]];
  } finally {
    keeper.kill('SIGTERM');
  }
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
  if (process.env.BENCH_K8S_WARM_ONLY === '1') {
    // Only the warm join, next to the program started directly (issue 15's goal: under 1 s).
    const direct = await rounds(PROGRAM);
    const rows: Array<[string, number]> = [['program started directly', direct], ...(await warmJoinRows(ns.name, pod, tmp))];
    console.log(`\nSession start to the program's first instruction (median of ${ROUNDS}, same run; load average ${os.loadavg()[0]!.toFixed(1)}):`);
    for (const [name, ms] of rows) console.log(`  ${name.padEnd(52)} ${String(ms).padStart(6)} ms   ratio ${(ms / direct).toFixed(1)} vs direct`);
  } else if (process.env.BENCH_K8S_STREAM_ONLY !== '1') {
    const target = await runContainer({ image: await toolsImage(), name: 'bench-k8s-target', cmd: ['sleep', 'infinity'] });
    const direct = await rounds(PROGRAM);
    const rows: Array<[string, number]> = [
      ['program started directly', direct],
      ['mirrord exec -t docker/NAME', await rounds([process.execPath, cli, 'exec', '-t', `docker/${target.name}`, '--', ...PROGRAM])],
      ['mirrord exec -t pod/NAME (job mode)', await rounds([process.execPath, cli, 'exec', '-n', ns.name, '-t', pod, '--', ...PROGRAM])],
      ['mirrord exec -t pod/NAME (ephemeral)', await rounds([process.execPath, cli, 'exec', '-f', eph, '-n', ns.name, '-t', pod, '--', ...PROGRAM])],
    ];
    rows.push(...(await warmJoinRows(ns.name, pod, tmp)));
    console.log(`\nSession start to the program's first instruction (median of ${ROUNDS}, same run; load average ${os.loadavg()[0]!.toFixed(1)}):`);
    for (const [name, ms] of rows) console.log(`  ${name.padEnd(52)} ${String(ms).padStart(6)} ms   ratio ${(ms / direct).toFixed(1)} vs direct`);
  }
  if (process.env.BENCH_K8S_WARM_ONLY !== '1') await streamRows(ns.name, pod, images[0]!);
} finally {
  await ns.remove();
  await removeTestResources(RUN_ID);
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
