/**
 * The container-mode sidecar: runs the intproxy inside the network namespace the user's container
 * joins, so the layer's loopback requests and the one-shot listeners of redirected connections are
 * on that container's own 127.0.0.1. It speaks AP to the agent over its attached stdin/stdout (the
 * CLI relays the bytes to the agent's stream), and announces itself with one line on stderr. It
 * also serves the target's mounted files (mounts.ts), the lifeline of mirrord-init and, with
 * container.capture = namespace, the capture (capture.ts, dns-responder.ts). Runs on Debian
 * bookworm's Node 18 inside the sidecar image.
 */
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { Duplex, type Writable } from 'node:stream';
import { AgentConnection } from '../../src/agent-link/connection.js';
import type { ResolvedFeatures } from '../../src/config/schema.js';
import { layerHintEnv } from '../../src/fs/rules.js';
import { Intproxy, type IntproxyTimeouts } from '../../src/intproxy/intproxy.js';
import { pingOptions, proxyLogger } from '../../src/intproxy/proxy-log.js';
import { createLogger, parseLevel, type LogLevel, type Logger } from '../../common/log.js';
import { PRODUCT_NAME, PRODUCT_VERSION } from '../../common/version.js';
import { startCapture } from './capture.js';
import { IDLE_PREFIX, LAYER_IN_SIDECAR, MOUNTS_SOCKET, READY_PREFIX, type SidecarReady } from '../../common/sidecar-contract.js';
import { startDnsResponder } from './dns-responder.js';
import { SyncTooLarge, packSync, planSync, syncRoots, withLocalCopies, type SyncOptions } from '../../src/fs/mounts.js';

const log = createLogger('mirrord-sidecar', parseLevel(process.env.MIRRORD_SIDECAR_LOG));

function stdoutStream(): Writable {
  const st = fs.fstatSync(1);
  if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd: 1, readable: false, writable: true });
  return fs.createWriteStream('', { fd: 1 });
}

/** The keys of internal_proxy the sidecar applies (MIRRORD_SIDECAR_PROXY). */
type SidecarProxy = IntproxyTimeouts & { ping_interval?: number; log_level?: LogLevel; json_log?: boolean };

async function main(): Promise<void> {
  const token = process.env.MIRRORD_SIDECAR_TOKEN ?? '';
  const features = JSON.parse(process.env.MIRRORD_SIDECAR_FEATURES ?? '{}') as ResolvedFeatures;
  // The file rules take the program's working directory as local, and the intproxy reads its own:
  // this throwaway container takes the user container's (made here when the sidecar image lacks it).
  const cwd = process.env.MIRRORD_SIDECAR_CWD;
  if (cwd) {
    fs.mkdirSync(cwd, { recursive: true });
    process.chdir(cwd);
  }
  // internal_proxy of the config (the CLI writes these lines to its log_destination).
  const proxy = process.env.MIRRORD_SIDECAR_PROXY ? (JSON.parse(process.env.MIRRORD_SIDECAR_PROXY) as SidecarProxy) : {};
  const ping = pingOptions(proxy.ping_interval);
  const link = Duplex.from({ readable: process.stdin, writable: stdoutStream() });
  const agent = await AgentConnection.connect(link, { token, client: `${PRODUCT_NAME}-sidecar/${PRODUCT_VERSION}`, log: log.child('link'), ...ping });
  const mounts = process.env.MIRRORD_SIDECAR_MOUNTS ? (JSON.parse(process.env.MIRRORD_SIDECAR_MOUNTS) as SyncOptions) : undefined;
  let mountRoots: string[] | undefined;
  if (mounts) {
    const listed = await agent.request('fs.mounts', {}).catch((err: Error) => {
      log.warn(`cannot list the target's mounts: ${err.message}`);
      return { mounts: [] };
    });
    mountRoots = syncRoots(listed.mounts, mounts.exclude);
    // The container gets its own copy of these, so the layer reads that (src/fs/mounts.ts).
    features.fs = withLocalCopies(features.fs, mountRoots);
  }
  // The fast path (docs/fast-path.md): the program's container has the agent's socket helper.
  const fdPassing = process.env.MIRRORD_SIDECAR_FDPASS === '1';
  const intproxyLog = proxyLogger(
    { level: proxy.log_level, json: proxy.json_log },
    'mirrord-intproxy',
    '',
    log.child('intproxy'),
    parseLevel(process.env.MIRRORD_SIDECAR_LOG),
  );
  let idled = false;
  const intproxy = await Intproxy.start({
    agent,
    features,
    log: intproxyLog,
    ownNamespace: true,
    fdPassing,
    // unix_streams: the user's container mounts this volume (--volumes-from) at the same path, so the
    // one-shot unix listeners are reachable from its mount namespace too.
    unixListenDir: path.dirname(LAYER_IN_SIDECAR),
    proxy,
    // mirrord's intproxy exits after its idle timeouts: the link ends, the container runs on without
    // the target; this process stays while the CLI holds it, as the container's network and lifeline.
    onIdle: (reason) => {
      idled = true;
      process.stderr.write(`${IDLE_PREFIX}${reason}\n`);
      void intproxy.close().finally(() => agent.close());
    },
  });
  const env = (await agent.request('env.get', {})).env;
  const hints = layerHintEnv(await intproxy.files.rules());
  const lifeline = await startLifeline();
  if (mounts) serveMounts(agent, mounts, log.child('mounts'));
  let capture: SidecarReady['capture'];
  if (process.env.MIRRORD_SIDECAR_CAPTURE === 'namespace') {
    const dns = features.dns.enabled ? await startDnsResponder(agent, log.child('dns')) : undefined;
    const c = await startCapture({
      tcp: features.outgoing.tcp,
      dns,
      layerEnv: { LD_PRELOAD: LAYER_IN_SIDECAR, MIRRORD_LAYER_ADDR: intproxy.address, MIRRORD_FS: 'off', ...pick(process.env, 'MIRRORD_LAYER_LOG') },
      log: log.child('capture'),
    });
    capture = { tcp: c.tcpPort, dns: dns?.udpPort };
  }
  // agentPid: the CLI starts the guard that removes the agent's rules if the agent dies.
  const ready: SidecarReady = { layerAddr: intproxy.address, env, hints, agentPid: agent.info.agentPid, lifelinePort: lifeline, capture, mountRoots };
  process.stderr.write(READY_PREFIX + JSON.stringify(ready) + '\n');
  await new Promise<void>((resolve) => agent.onClose(() => (idled ? process.stdin.once('close', resolve).resume() : resolve())));
  await intproxy.close();
}

/**
 * The user container's PID 1 (mirrord-init) holds a connection here; when this process ends (its
 * stdin closed: the CLI is gone, even killed with SIGKILL) the connection drops and the init stops
 * the container.
 */
function startLifeline(): Promise<number> {
  const held = new Set<net.Socket>();
  const server = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** One line of JSON (what will come, or why nothing will), then the tar archive. */
function serveMounts(agent: AgentConnection, opts: SyncOptions, log: Logger): void {
  fs.rmSync(MOUNTS_SOCKET, { force: true });
  net
    .createServer((sock) => {
      sock.on('error', () => undefined);
      void (async () => {
        let started = false;
        try {
          const plan = await planSync(agent, opts);
          log.debug(`mounts: ${plan.roots.join(', ') || 'none'}: ${plan.entries.length} entries, ${plan.bytes} bytes`);
          sock.write(JSON.stringify({ ok: true, roots: plan.roots, entries: plan.entries.length, bytes: plan.bytes }) + '\n');
          started = true;
          await packSync(agent, plan, sock);
        } catch (err) {
          // Mid-archive, a cut stream is what makes the engine refuse the partial archive.
          if (started) return void sock.destroy(err as Error);
          const tooLarge = err instanceof SyncTooLarge;
          sock.end(JSON.stringify({ ok: false, tooLarge, error: (err as Error).message, where: tooLarge ? err.where : undefined }) + '\n');
          if (!tooLarge) log.warn(`mounts: ${(err as Error).message}`);
        }
      })();
    })
    .listen(MOUNTS_SOCKET);
}

function pick(env: NodeJS.ProcessEnv, ...keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.filter((k) => env[k] !== undefined).map((k) => [k, env[k]!]));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`mirrord-sidecar: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
