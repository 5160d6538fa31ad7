/**
 * Docker's registry (github.com/distribution/distribution/v3), built from the Go module proxy into
 * a cache directory the first time (about 2 min on 2 cores; needs Go), and run by a test on a
 * loopback port with its storage in a temporary directory. The engine pushes to 127.0.0.0/8 over
 * plain HTTP without configuration, and so does containerd for a node on this machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

export const REGISTRY_MODULE = 'github.com/distribution/distribution/v3/cmd/registry@v3.0.0';
const BIN_DIR = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'mirrord-test', 'registry-v3.0.0');

export async function registryBinary(): Promise<string> {
  const bin = path.join(BIN_DIR, 'registry');
  if (existsSync(bin)) return bin;
  mkdirSync(BIN_DIR, { recursive: true });
  await promisify(execFile)('go', ['install', REGISTRY_MODULE], { env: { ...process.env, GOBIN: BIN_DIR, CGO_ENABLED: '0' }, timeout: 900_000 });
  return bin;
}

export interface Registry {
  /** `127.0.0.1:PORT` */
  host: string;
  tags(repo: string): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startRegistry(): Promise<Registry> {
  const bin = await registryBinary();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = path.join(dir, 'config.yml');
  writeFileSync(
    config,
    ['version: 0.1', 'log: {level: warn}', `storage: {filesystem: {rootdirectory: ${path.join(dir, 'data')}}}`, `http: {addr: "${host}"}`, ''].join('\n'),
  );
  const child: ChildProcess = spawn(bin, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://${host}/v2/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the registry did not start: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    async tags(repo) {
      const r = await fetch(`http://${host}/v2/${repo}/tags/list`);
      return r.ok ? (((await r.json()) as { tags?: string[] }).tags ?? []) : [];
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
