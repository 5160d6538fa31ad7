/**
 * The socket helper (agent/sockhelper, docs/fast-path.md): started when the CLI mounted a directory
 * for it (MIRRORD_AGENT_FDPASS_DIR) and gave it a token (MIRRORD_AGENT_FDPASS_TOKEN). It runs in the
 * agent's namespaces, which are the target's, and dies with the agent (parent-death signal). Any
 * failure here only costs the fast path: the session keeps the stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Logger } from '../../../common/log.js';
import { setHandoverHelper } from '../incoming/handover.js';

export const FDPASS_SOCKET_NAME = 'h.sock';

export interface SockHelper {
  bootId: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startSockHelper(env: NodeJS.ProcessEnv, log: Logger, readyMs = 3_000): Promise<SockHelper | undefined> {
  const dir = env.MIRRORD_AGENT_FDPASS_DIR;
  const token = env.MIRRORD_AGENT_FDPASS_TOKEN;
  if (!dir) return undefined;
  // The agent's own children (iptables, ...) have no use for it.
  delete env.MIRRORD_AGENT_FDPASS_TOKEN;
  if (!token) {
    log.warn('MIRRORD_AGENT_FDPASS_DIR is set without MIRRORD_AGENT_FDPASS_TOKEN: no socket helper');
    return undefined;
  }
  const bin = env.MIRRORD_AGENT_SOCKHELPER ?? path.join(path.dirname(process.argv[1] ?? '/opt/mirrord/agent.mjs'), 'mirrord-sockhelper');
  let child: ChildProcess;
  try {
    child = spawn(bin, [path.join(dir, FDPASS_SOCKET_NAME)], {
      env: { MIRRORD_SOCKHELPER_TOKEN: token },
      // fd 3: Node's IPC channel, over which incoming/handover.ts passes stolen connections.
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
  } catch (err) {
    log.warn(`socket helper: cannot start ${bin}: ${(err as Error).message}`);
    return undefined;
  }
  child.stderr?.on('data', (d: Buffer) => log.warn(`socket helper: ${d.toString().trim()}`));
  const bootId = await new Promise<string | undefined>((resolve) => {
    let out = '';
    const timer = setTimeout(() => resolve(undefined), readyMs);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('error', (err) => {
      log.warn(`socket helper: ${err.message}`);
      clearTimeout(timer);
      resolve(undefined);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(undefined);
      log.debug(`socket helper exited (${code ?? 'signal'})`);
    });
  });
  if (!bootId) {
    child.kill('SIGKILL');
    log.warn('socket helper did not start: the session uses the stream');
    return undefined;
  }
  log.info(`socket helper ready (boot id ${bootId})`);
  // The helper lives as long as the agent; it must not keep the agent's event loop alive.
  child.unref();
  (child.channel as { unref?: () => void } | undefined)?.unref?.();
  child.stdout?.destroy();
  setHandoverHelper(child, log.child('handover'));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    bootId,
    pid: child.pid!,
    // Reaped before the agent leaves: an orphan would go to the target's PID 1, which may never
    // reap it (a plain `sleep` does not), and stay there as a zombie.
    // The child and the timer are referenced while we wait: with nothing else left, an unreferenced
    // wait would let Node end the process before it reaped the helper.
    async stop() {
      setHandoverHelper(undefined, log);
      child.ref();
      child.kill('SIGKILL');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 3_000)))]);
      clearTimeout(timer);
    },
  };
}
