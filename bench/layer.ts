/**
 * `npm run bench:layer` (also part of `npm run bench`): what the layer costs a program for calls
 * it passes through, in ns per call, with and without the layer in the same run (no Docker: the
 * real intproxy runs in this process, its agent stubbed). The program is layer/bench/passthrough.c:
 *  - read() of 1 byte from a pipe (the layer only checks its descriptor table);
 *  - socket + connect + accept + close to a loopback listener: the layer asks the intproxy, which
 *    answers "bypass" (ignore_localhost), then libc connects (incoming off: the listener is not
 *    subscribed, which would ask the agent);
 *  - open + close of a local file in $TMPDIR, which the CLI's hints keep local (the layer checks
 *    the path against them, asks nothing);
 *  - getaddrinfo("localhost"): answered by the intproxy (the stubbed agent answers at once, so
 *    this is the layer + intproxy round trip, not a remote DNS).
 * BENCH_ROUNDS (default 3) runs of each; the median is reported.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, resolveFeatures } from '../src/config/schema.js';
import { layerHintEnv } from '../src/fs/rules.js';
import { Intproxy } from '../src/intproxy/intproxy.js';
import { fakeAgentPort } from '../test/helpers/fake-agent-port.js';
import { createLogger } from '../common/log.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PROGRAM = path.join(ROOT, 'layer/build/bench/passthrough');
const LAYER = path.join(ROOT, 'layer/build/libmirrord_layer.so');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Asynchronous: the intproxy answering the layer runs on this process's event loop. */
async function runProgram(files: string[], env: NodeJS.ProcessEnv): Promise<Map<string, number>> {
  const child = spawn(PROGRAM, files, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`passthrough failed (${code}): ${stderr}`);
  const out = new Map<string, number>();
  for (const line of stdout.trim().split('\n')) {
    const [name, ns] = line.split(' ');
    if (Number(ns) < 0) throw new Error(`passthrough: ${name} failed`);
    out.set(name!, Number(ns));
  }
  return out;
}

export async function benchLayer(): Promise<Array<[string, number, number]>> {
  const log = createLogger('bench', 'error');
  const agent = fakeAgentPort({
    request: (method) =>
      method === 'dns.lookup'
        ? Promise.resolve({ addresses: [{ address: '127.0.0.1', family: 4 }] })
        : method === 'fs.mounts'
          ? Promise.resolve({ mounts: [] })
          : Promise.reject(new Error(`unexpected ${method}`)),
  });
  const features = resolveFeatures(configSchema.parse({ feature: { network: { incoming: 'off', outgoing: { ignore_localhost: true } } } }));
  const intproxy = await Intproxy.start({ agent, features, log });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-bench-layer-'));
  try {
    const tmpFile = path.join(dir, 'local.txt');
    writeFileSync(tmpFile, 'local\n');
    const files = [tmpFile];
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MIRRORD_') && k !== 'LD_PRELOAD') base[k] = v;
    const hints = layerHintEnv(await intproxy.files.rules());
    const withLayer = { ...base, ...hints, LD_PRELOAD: LAYER, MIRRORD_LAYER_ADDR: intproxy.address };
    const without: Map<string, number>[] = [];
    const under: Map<string, number>[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      without.push(await runProgram(files, base));
      under.push(await runProgram(files, withLayer));
    }
    const labels: Record<string, string> = {
      pipe_read: 'read 1 byte, pipe',
      loopback_connect: 'connect 127.0.0.1 (+socket/accept/close)',
      [`open_close:${tmpFile}`]: 'open + close, $TMPDIR file',
      getaddrinfo_localhost: 'getaddrinfo("localhost") (intproxy)',
    };
    return [...without[0]!.keys()].map((name) => [labels[name] ?? name, median(without.map((m) => m.get(name)!)), median(under.map((m) => m.get(name)!))]);
  } finally {
    await intproxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await benchLayer();
  console.log(`layer pass-through cost, ns per call (median of ${ROUNDS} runs, each the best of 7 batches)`);
  console.log(`${'operation'.padEnd(42)} ${'without'.padStart(10)} ${'with layer'.padStart(11)} ${'ratio'.padStart(7)} ${'added'.padStart(9)}`);
  for (const [name, a, b] of rows) {
    console.log(
      `${name.padEnd(42)} ${a.toFixed(0).padStart(10)} ${b.toFixed(0).padStart(11)} ${(b / a).toFixed(2).padStart(7)} ${(b - a).toFixed(0).padStart(9)}`,
    );
  }
}
