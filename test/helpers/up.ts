import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from './cli.js';

/** A `mirrord up` running in its own process group (so a test can signal the group, as a terminal's Ctrl-C does). */
export interface Up {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** The exit status as a shell reports it: 128 + signal when killed. */
  done: Promise<number | null>;
}

export function startUp(args: string[], env: NodeJS.ProcessEnv = {}, children?: Set<ChildProcess>): Up {
  const child = spawn(process.execPath, [CLI, 'up', ...args], {
    env: { ...process.env, MIRRORD_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children?.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ? 128 + (os.constants.signals[signal] ?? 0) : code)));
  return { child, out: () => out, err: () => err, done };
}

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
