/**
 * What one `mirrord exec` or `mirrord container` process has or left on the engine, told apart from
 * other sessions (other tests, other people's runs on the same engine) by its owner label.
 */
import os from 'node:os';
import type Docker from 'dockerode';
import { LABEL_OWNER } from '../../src/platforms/docker/labels.js';
import { listContainers } from './docker-fixtures.js';

/** Agent, guard, sidecar and user containers of the CLI process `pid`. */
export function sessionContainers(pid: number): Promise<Docker.ContainerInfo[]> {
  return listContainers(`${LABEL_OWNER}=${os.hostname()}:${pid}`);
}

/** Polls until the session's containers are gone or `timeoutMs` passes; returns what is left. */
export async function waitSessionGone(pid: number, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await sessionContainers(pid);
    if (left.length === 0 || Date.now() > deadline) return left.map((c) => `${c.Names[0]} (${c.Labels['dev.mirrord.agent']}, ${c.State})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls until the session's user container runs (the program has started). */
export async function waitUserRunning(pid: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await sessionContainers(pid)).some((c) => c.Labels['dev.mirrord.agent'] === 'user' && c.State === 'running')) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the user container of mirrord ${pid} did not start within ${timeoutMs} ms`);
}
