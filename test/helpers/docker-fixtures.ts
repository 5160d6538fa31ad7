/**
 * Real containers and networks for end-to-end tests. Everything made here carries TEST_LABEL (value:
 * this run's id), so `removeTestResources` (run by test/run-all.sh before and after) reaps whatever a
 * crashed or killed test left behind.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { createLogger, parseLevel } from '../../common/log.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';

export const TEST_LABEL = 'dev.mirrord.test';
/**
 * Shared by every file of one run when run-all.sh sets it; otherwise one per process. The form
 * run-PID-EPOCH lets test/helpers/cleanup.ts tell a dead run's leftovers from a live one's.
 */
export const RUN_ID = process.env.MIRRORD_TEST_RUN_ID ?? `run-${process.pid}-${Math.floor(Date.now() / 1000)}`;

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WAIT_MS = 60_000;
const log = createLogger('test', parseLevel(process.env.MIRRORD_LOG));

let client: Docker | undefined;
/** A client for the engine DOCKER_HOST names, or the local socket. */
export function docker(): Docker {
  client ??= new Docker();
  return client;
}

let tools: Promise<string> | undefined;
export function toolsImage(): Promise<string> {
  tools ??= ensureImage(
    docker(),
    {
      repository: 'mirrord-test-tools',
      files: { Dockerfile: readFileSync(path.join(REPO_ROOT, 'test/images/tools.Dockerfile')) },
      labels: { 'dev.mirrord.component': 'test-tools' },
    },
    { progress: quietProgress, log },
  ).catch((err: unknown) => {
    tools = undefined;
    throw err;
  });
  return tools;
}

let staticClient: Promise<string> | undefined;
/** Statically linked busybox on an empty image (test/images/static-client.Dockerfile). */
export function staticClientImage(): Promise<string> {
  staticClient ??= ensureImage(
    docker(),
    {
      repository: 'mirrord-test-static-client',
      files: { Dockerfile: readFileSync(path.join(REPO_ROOT, 'test/images/static-client.Dockerfile')) },
      labels: { 'dev.mirrord.component': 'test-static-client' },
    },
    { progress: quietProgress, log },
  ).catch((err: unknown) => {
    staticClient = undefined;
    throw err;
  });
  return staticClient;
}

/** A named volume carrying TEST_LABEL. */
export async function createVolume(prefix: string): Promise<{ name: string; remove(): Promise<void> }> {
  const name = `${prefix}-${suffix()}`;
  await docker().createVolume({ Name: name, Labels: labels() });
  return { name, remove: () => ignoreMissing(docker().getVolume(name).remove()) };
}

const suffix = () => randomBytes(3).toString('hex');
const labels = () => ({ [TEST_LABEL]: RUN_ID });

export async function createNetwork(prefix: string): Promise<{ name: string; remove(): Promise<void> }> {
  const name = `${prefix}-${suffix()}`;
  const net = await docker().createNetwork({ Name: name, CheckDuplicate: true, Labels: labels() });
  return { name, remove: () => ignoreMissing(net.remove()) };
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestContainer {
  id: string;
  name: string;
  ip(network: string): Promise<string>;
  exec(cmd: string[]): Promise<ExecResult>;
  stop(): Promise<void>;
  remove(): Promise<void>;
}

export interface RunOptions {
  /** Prefix of the container's name; a random suffix keeps parallel runs apart. */
  name?: string;
  /** Defaults to the test tools image. */
  image?: string;
  network?: string;
  aliases?: string[];
  cmd: string[];
  env?: Record<string, string>;
  /** `SRC:DST[:OPTS]`, as docker run -v: host paths or volume names. */
  binds?: string[];
  waitFor?: { tcpPort: number } | { log: RegExp };
}

export async function runContainer(o: RunOptions): Promise<TestContainer> {
  const d = docker();
  const image = o.image ?? (await toolsImage());
  const name = `${o.name ?? 'mirrord-test'}-${suffix()}`;
  const created = await d.createContainer({
    name,
    Image: image,
    Cmd: o.cmd,
    Env: Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`),
    Labels: labels(),
    HostConfig: { ...(o.network ? { NetworkMode: o.network } : {}), ...(o.binds ? { Binds: o.binds } : {}) },
    NetworkingConfig: o.network ? { EndpointsConfig: { [o.network]: { Aliases: o.aliases ?? [] } } } : undefined,
  });
  const c = wrap(created, name);
  try {
    await created.start();
    if (o.waitFor && 'tcpPort' in o.waitFor) await waitForPort(c, o.waitFor.tcpPort);
    else if (o.waitFor) await waitForLog(created, o.waitFor.log);
  } catch (err) {
    const logs = await containerLogs(created).catch(() => '');
    await c.remove();
    throw new Error(`test container ${name} (${image}) did not become ready: ${(err as Error).message}\n--- its output ---\n${logs}`, {
      cause: err,
    });
  }
  return c;
}

function wrap(container: Docker.Container, name: string): TestContainer {
  return {
    id: container.id,
    name,
    async ip(network) {
      const info = await container.inspect();
      const ip = info.NetworkSettings.Networks[network]?.IPAddress;
      if (!ip) throw new Error(`container ${name} has no address on network ${network}`);
      return ip;
    },
    exec: (cmd) => execIn(container, cmd),
    stop: () => ignoreMissing(container.stop({ t: 2 })),
    remove: () => ignoreMissing(container.remove({ force: true, v: true })),
  };
}

async function execIn(container: Docker.Container, cmd: string[]): Promise<ExecResult> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = collect();
  const err = collect();
  docker().modem.demuxStream(stream, out.sink, err.sink);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  // The stream can end a moment before the engine records the exit code.
  for (let i = 0; i < 50; i++) {
    const info = await exec.inspect();
    if (!info.Running && info.ExitCode !== null) return { code: info.ExitCode, stdout: out.text(), stderr: err.text() };
    await sleep(100);
  }
  throw new Error(`exec ${JSON.stringify(cmd)} in ${container.id.slice(0, 12)}: no exit code`);
}

function collect(): { sink: PassThrough; text(): string } {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (b: Buffer) => chunks.push(b));
  return { sink, text: () => Buffer.concat(chunks).toString() };
}

async function waitForPort(c: TestContainer, port: number): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    await assertRunning(c.id);
    // An exec into a container that just died fails with a 409; report the exit instead.
    const r = await c.exec(['sh', '-c', `nc -z 127.0.0.1 ${port}`]).catch(async (err: unknown) => {
      await assertRunning(c.id);
      throw err;
    });
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not listening after ${WAIT_MS / 1000} s`);
    await sleep(200);
  }
}

async function waitForLog(container: Docker.Container, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (pattern.test(await containerLogs(container))) return;
    await assertRunning(container.id);
    if (Date.now() > deadline) throw new Error(`no log line matching ${pattern} after ${WAIT_MS / 1000} s`);
    await sleep(200);
  }
}

async function assertRunning(id: string): Promise<void> {
  const s = (await docker().getContainer(id).inspect()).State;
  if (!s.Running) throw new Error(`container exited (code ${s.ExitCode})`);
}

async function containerLogs(container: Docker.Container): Promise<string> {
  const raw = await container.logs({ stdout: true, stderr: true, follow: false });
  return demuxBuffer(raw);
}

/** Non-TTY logs come framed: 8-byte headers (stream, 0, 0, 0, big-endian length). */
function demuxBuffer(buf: Buffer): string {
  const parts: Buffer[] = [];
  for (let i = 0; i + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return Buffer.concat(parts).toString();
}

/** Every container (running or not) with that label key, or key=value. */
export async function listContainers(labelFilter: string): Promise<Docker.ContainerInfo[]> {
  return docker().listContainers({ all: true, filters: { label: [labelFilter] } });
}

/** Removes every container and network carrying TEST_LABEL: of every run, or only of runId. */
export async function removeTestResources(runId?: string): Promise<void> {
  const filter = runId ? `${TEST_LABEL}=${runId}` : TEST_LABEL;
  const d = docker();
  const containers = await listContainers(filter);
  await Promise.all(containers.map((c) => ignoreMissing(d.getContainer(c.Id).remove({ force: true, v: true }))));
  const networks = await d.listNetworks({ filters: { label: [filter] } });
  await Promise.all(networks.map((n) => ignoreMissing(d.getNetwork(n.Id).remove())));
  const { Volumes: volumes } = await d.listVolumes({ filters: { label: [filter] } });
  await Promise.all((volumes ?? []).map((v) => ignoreMissing(d.getVolume(v.Name).remove())));
}

async function ignoreMissing(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    // 404: already gone; 304: already stopped; 409: removal already in progress.
    const code = (err as { statusCode?: number }).statusCode;
    if (code !== 404 && code !== 304 && code !== 409) throw err;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
