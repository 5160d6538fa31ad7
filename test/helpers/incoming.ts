/**
 * What the incoming-traffic e2e files share: `mirrord exec` sessions run in their own process
 * groups, polling, and the target's nat table read (and written) from inside its network namespace
 * with the agent image's own iptables.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from './cli.js';
import { docker } from './docker-fixtures.js';

export interface Running {
  child: ChildProcess;
  out(): string;
  done: Promise<number | null>;
}

const running = new Set<ChildProcess>();

/** `mirrord exec -t docker/TARGET FLAGS -- CMD`, with its output collected (stdout and stderr together). */
export function startMirrord(target: string, flags: string[], cmd: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, [CLI, 'exec', '-t', `docker/${target}`, ...flags, '--', ...cmd], {
    env: { ...process.env, MIRRORD_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a test can take down the program too when it kills the CLI.
    detached: true,
  });
  running.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  // 'exit', not 'close': a program orphaned by a killed CLI still holds the pipes.
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, done };
}

export async function stopMirrord(r: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  r.child.kill(signal);
  await r.done;
}

/** Whatever is left of every session's process group (a program orphaned by a killed CLI). */
export function killGroups(): void {
  for (const c of running) {
    try {
      if (c.pid) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}

export async function until(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await f()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Runs `cmd` in a one-shot container of `image` in the target's network namespace; its exit code and stdout. */
export async function inTargetNet(targetId: string, image: string, cmd: string[]): Promise<{ code: number; stdout: string; output: string }> {
  const c = await docker().createContainer({
    Image: image,
    Entrypoint: [cmd[0]!],
    Cmd: cmd.slice(1),
    HostConfig: { NetworkMode: `container:${targetId}`, CapAdd: ['NET_ADMIN', 'NET_RAW'], AutoRemove: false },
  });
  try {
    await c.start();
    const { StatusCode } = (await c.wait()) as { StatusCode: number };
    const output = demux((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer);
    return { code: StatusCode, stdout: demux((await c.logs({ stdout: true, stderr: false })) as unknown as Buffer), output };
  } finally {
    await c.remove({ force: true });
  }
}

/** The target's nat table as both iptables back ends print it, without comments and counters. */
export async function natTable(targetId: string, image: string): Promise<string> {
  const dump = async (bin: string) =>
    (await inTargetNet(targetId, image, [bin, '-t', 'nat'])).stdout
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/g, ''))
      .join('\n');
  return `${await dump('iptables-nft-save')}\n--\n${await dump('iptables-legacy-save')}`;
}

/** Docker's log framing without a TTY: 8-byte headers (stream, 3 zero bytes, u32 BE size). */
function demux(buf: Buffer): string {
  let out = '';
  for (let at = 0; at + 8 <= buf.length; ) {
    const size = buf.readUInt32BE(at + 4);
    out += buf.subarray(at + 8, at + 8 + size).toString('utf8');
    at += 8 + size;
  }
  return out;
}
