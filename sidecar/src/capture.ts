/**
 * Namespace-level capture (container.capture = namespace), set up by the sidecar in the network
 * namespace it shares with the user's container: iptables `nat OUTPUT` rules send every outgoing
 * TCP connection to mirrord-capture (which re-dials it through the layer, so it leaves from the
 * target) and every DNS query to the DNS responder (answered by the agent). Programs that bypass
 * libc, which the layer cannot see, are covered this way.
 *
 * Loops are avoided twice over: mirrord-capture runs as CAPTURE_UID, whose connections the rules
 * skip, and the layer's own traffic (requests to the intproxy, redirected connections) goes to
 * 127.0.0.0/8, which is never captured. So a dynamically linked program keeps its layer, and the
 * layer's handling and the capture never apply to the same connection.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { Logger } from '../../common/log.js';

const run = promisify(execFile);
export const CAPTURE_UID = 64613;
export const CAPTURE_CHAIN = 'MIRRORD_CAPTURE';
const HELPER = '/opt/mirrord/mirrord-capture';

export interface CaptureOptions {
  tcp: boolean;
  dns?: { udpPort: number; tcpPort: number };
  layerEnv: Record<string, string>;
  log: Logger;
}

export interface Capture {
  helper?: ChildProcess;
  tcpPort?: number;
  backend: string;
  stop(): void;
}

type Backend = 'nft' | 'legacy';

/** The back end that already holds rules here (Docker's embedded DNS rules live in one of them). */
async function detectBackend(): Promise<Backend> {
  const count = async (b: Backend) => {
    try {
      return (await run(`iptables-${b}-save`, ['-t', 'nat'])).stdout.split('\n').filter((l) => l.startsWith('-A ')).length;
    } catch {
      return -1;
    }
  };
  const [nft, legacy] = await Promise.all([count('nft'), count('legacy')]);
  return legacy > 0 && legacy >= nft ? 'legacy' : nft >= 0 ? 'nft' : 'legacy';
}

/** The rules of one address family, in order; first match wins. */
export function captureRules(family: 4 | 6, o: { tcpPort?: number; dns?: { udpPort: number; tcpPort: number } }): string[][] {
  const loopback = family === 4 ? '127.0.0.0/8' : '::1/128';
  const rules: string[][] = [['-m', 'owner', '--uid-owner', String(CAPTURE_UID), '-j', 'RETURN']];
  // Before the loopback exemption: Docker's own resolver is 127.0.0.11.
  if (o.dns && family === 4) {
    rules.push(['-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', String(o.dns.udpPort)]);
    rules.push(['-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', String(o.dns.tcpPort)]);
  }
  rules.push(['-d', loopback, '-j', 'RETURN']);
  if (o.tcpPort) rules.push(['-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(o.tcpPort)]);
  return rules;
}

async function install(binary: string, rules: string[][]): Promise<void> {
  await run(binary, ['-w', '5', '-t', 'nat', '-N', CAPTURE_CHAIN]);
  for (const r of rules) await run(binary, ['-w', '5', '-t', 'nat', '-A', CAPTURE_CHAIN, ...r]);
  await run(binary, ['-w', '5', '-t', 'nat', '-I', 'OUTPUT', '1', '-j', CAPTURE_CHAIN]);
}

/** Starts mirrord-capture under the layer and reads the port it listens on. */
function startHelper(env: Record<string, string>, log: Logger): Promise<{ child: ChildProcess; port: number; ipv6: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(HELPER, [], { uid: CAPTURE_UID, gid: CAPTURE_UID, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`mirrord-capture exited (${signal ?? code}) before it listened`)));
    createInterface({ input: child.stderr! }).on('line', (l) => log.warn(l));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      const [port, mode] = line.trim().split(' ');
      resolve({ child, port: Number(port), ipv6: mode === 'ipv6' });
    });
  });
}

export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const backend = await detectBackend();
  let helper: { child: ChildProcess; port: number; ipv6: boolean } | undefined;
  if (o.tcp) {
    helper = await startHelper({ PATH: '/usr/bin:/bin', ...o.layerEnv }, o.log);
    helper.child.on('exit', (code, signal) => o.log.warn(`mirrord-capture exited (${signal ?? code}): captured connections now fail`));
  }
  await install(`iptables-${backend}`, captureRules(4, { tcpPort: helper?.port, dns: o.dns }));
  if (helper?.ipv6) {
    // IPv6 NAT is missing from some kernels and namespaces; IPv4 capture stands on its own.
    await install(`ip6tables-${backend}`, captureRules(6, { tcpPort: helper.port })).catch((err: Error) => o.log.debug(`no IPv6 capture: ${err.message}`));
  }
  o.log.debug(`namespace capture on (${backend}): tcp -> ${helper?.port ?? 'off'}, dns -> ${o.dns ? `${o.dns.udpPort}/${o.dns.tcpPort}` : 'off'}`);
  return {
    helper: helper?.child,
    tcpPort: helper?.port,
    backend,
    stop() {
      helper?.child.kill('SIGKILL');
    },
  };
}
