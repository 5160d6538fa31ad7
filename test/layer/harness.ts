/**
 * Shared by the layer tests: builds the layer, runs real programs under it, and provides the
 * local servers the fake intproxy sends redirected connections to.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const LAYER_DIR = path.join(ROOT, 'layer');
/**
 * MIRRORD_LAYER_TEST_ASAN=1 runs everything against the AddressSanitizer/UBSan build (the layer
 * and the C test programs; test/run-all.sh runs the layer tier a second time that way).
 */
export const ASAN = process.env.MIRRORD_LAYER_TEST_ASAN === '1';
const BUILD_DIR = path.join(LAYER_DIR, ASAN ? 'build-asan' : 'build');
export const LAYER_SO = path.join(BUILD_DIR, 'libmirrord_layer.so');
export const C_TESTS = path.join(BUILD_DIR, 'tests');
export const GREETING = 'hello from local server';
export const HTTP_BODY = 'remote-body via local server';

/** `make` is incremental and silent, so running it every time keeps tests on current sources. */
export function buildLayer(): void {
  try {
    execFileSync('make', ['-s', '-C', LAYER_DIR, ...(ASAN ? ['asan'] : [])], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    if (!existsSync(LAYER_SO) || !existsSync(path.join(C_TESTS, 't_connect'))) throw err;
    process.stderr.write(`warning: make -C layer failed, testing the existing build\n`);
  }
}

export interface Servers {
  tcpPort: number;
  httpPort: number;
  /** Remote ports of connections the greeting server accepted (proves where traffic went). */
  tcpAccepted: number;
  close(): Promise<void>;
}

export async function startServers(): Promise<Servers> {
  const tcp = net.createServer((s) => {
    servers.tcpAccepted++;
    s.on('error', () => undefined);
    s.end(`${GREETING}\n`);
  });
  const web = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end(`${HTTP_BODY}\n`);
  });
  tcp.listen(0, '127.0.0.1');
  web.listen(0, '127.0.0.1');
  await Promise.all([once(tcp, 'listening'), once(web, 'listening')]);
  const servers: Servers = {
    tcpPort: (tcp.address() as net.AddressInfo).port,
    httpPort: (web.address() as net.AddressInfo).port,
    tcpAccepted: 0,
    async close() {
      web.closeAllConnections();
      await Promise.all([new Promise((r) => tcp.close(r)), new Promise((r) => web.close(r))]);
    },
  };
  return servers;
}

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
  pid: number;
}

/** The environment a program gets: ours minus proxies and old MIRRORD_*, plus `extra`. */
export function programEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/_proxy$/i.test(k) || k.startsWith('MIRRORD_') || k === 'LD_PRELOAD' || k.startsWith('NODE_')) continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs under the layer, pointed at `addr` (undefined: MIRRORD_LAYER_ADDR unset). */
export function layerEnv(addr: string | undefined, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return programEnv({ ...asanEnv(), LD_PRELOAD: asanPreload() + LAYER_SO, MIRRORD_LAYER_ADDR: addr, ...extra });
}

/** The sanitizer runtime must come first in the initial library list. */
function asanPreload(): string {
  if (!ASAN) return '';
  return execFileSync('gcc', ['-print-file-name=libasan.so']).toString().trim() + ':';
}

/*
 * exitcode: a report changes the exit status even of a case that expects a failure. The leak
 * suppressions name only the Python interpreter's own allocator, whose objects live until exit by
 * design; leaks of the layer inside python3 are still reported, since the layer's allocations never
 * come from those functions.
 */
function asanEnv(): Record<string, string> {
  if (!ASAN) return {};
  return {
    ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:exitcode=86',
    LSAN_OPTIONS: `suppressions=${path.join(ROOT, 'test/layer/lsan.supp')}:print_suppressions=0`,
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1:exitcode=86',
  };
}

/** The first line of a sanitizer report in `stderr`, if any. */
export function sanitizerReport(stderr: string): string | undefined {
  return stderr.split('\n').find((l) => /ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/.test(l));
}

/** Runs a program to its end; `onLine` (optional) sees each stdout line as it arrives, to act mid-run. */
export async function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 20000,
  onLine?: (line: string, pid: number) => void,
): Promise<RunResult> {
  const started = Date.now();
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (!onLine) return;
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const l of parts) onLine(l, child.pid!);
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
  clearTimeout(timer);
  const result = { code, signal, stdout, stderr, ms: Date.now() - started, pid: child.pid ?? -1 };
  // Every case fails on a sanitizer report, whatever else it asserts.
  const report = sanitizerReport(stderr);
  if (report) assert.fail(`sanitizer report: ${report}\n${describeRun(result)}`);
  return result;
}

export function cTest(name: string): string {
  return path.join(C_TESTS, name);
}

/** Lines of `stdout` as a list, for exact comparisons with readable diffs. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}

/** Fails with the program's whole output, so a broken case explains itself. */
export function describeRun(r: RunResult): string {
  return `exit ${r.code} signal ${r.signal} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

/** The real interpreter, not pyenv's shell shim (whose own processes would muddy the records). */
export function realPython(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { env: programEnv({}) })
    .toString()
    .trim();
}
