/**
 * The agent's front door on Kubernetes. The CLI reaches the agent pod through the API server's
 * port-forward, which dials 127.0.0.1:PORT inside the pod's network namespace; this listener takes
 * that connection and runs the real agent (the same program as on Docker, speaking AP on its stdio)
 * as a child:
 *   - job mode: entered into the target container's network namespace with nsenter, so its sockets
 *     and iptables rules are the target's while this listener stays reachable in the agent pod's own;
 *   - ephemeral mode: already in the target pod's namespaces, no nsenter;
 *   - targetless: in the agent pod itself.
 * It also stands guard: a child that dies (killed, OOM) leaves its iptables chain behind, so the
 * listener removes it. The listener exits once no client has been connected for the TTL.
 *
 * Shared (agent.shared, job mode): one child for every session, the agent in shared mode (as on
 * Docker, agent/src/shared.ts) on a unix socket in this pod; each port-forwarded connection is
 * relayed to it, the CLI's join line first (its own session id and token). The child leaves
 * agent.ttl seconds after its last session; the listener leaves with it, or, if it was killed,
 * after removing its chain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../../common/log.js';
import { AP_KUBE_STREAM_WINDOW, AP_LISTENER_BANNER } from '../../../common/protocol/agent/index.js';
import { findContainerPid } from './find-pid.js';

export interface ListenerOptions {
  port: number;
  /** Job mode: the target container's ID from the pod status (`containerd://...`). */
  containerId?: string;
  /** Ephemeral mode: the target's PID as seen here (1: the target container's PID namespace). */
  targetPid?: number;
  targetless?: boolean;
  ttlSeconds: number;
  /** How long to wait for the first client before giving up. */
  firstClientSeconds: number;
  session: string;
  log: Logger;
  /** The agent bundle to run as the child. */
  agentPath: string;
  /** One shared child for every connection (see the file comment). */
  shared?: boolean;
}

/** The shared child's socket, in the agent pod's filesystem (nsenter --net keeps the mount namespace). */
const SHARED_SOCKET = '/tmp/mirrord-shared-agent.sock';

async function resolvePid(o: ListenerOptions): Promise<number> {
  if (o.targetless) return process.pid;
  if (o.targetPid) return o.targetPid;
  if (!o.containerId) throw new Error('set MIRRORD_AGENT_TARGET_CONTAINER_ID, MIRRORD_AGENT_TARGET_PID or MIRRORD_AGENT_TARGETLESS');
  // The container may be restarting; give it a few seconds to show up in /proc.
  for (let i = 0; i < 20; i++) {
    const pid = await findContainerPid(o.containerId);
    if (pid) return pid;
    await sleep(250);
  }
  throw new Error(`no process of container ${o.containerId} on this node (is the agent on the target's node, with hostPID?)`);
}

function childCommand(o: ListenerOptions, pid: number): [string, string[]] {
  const node = process.execPath;
  if (o.containerId) return ['nsenter', [`--net=/proc/${pid}/ns/net`, '--', node, o.agentPath]];
  return [node, [o.agentPath]];
}

export async function runListener(o: ListenerOptions): Promise<void> {
  // The agent it runs (own or shared) grants the port-forward's larger window (agent/src/outgoing.ts).
  process.env.MIRRORD_AGENT_STREAM_WINDOW ??= String(AP_KUBE_STREAM_WINDOW);
  if (o.shared) return runSharedListener(o);
  const pid = await resolvePid(o);
  o.log.info(`target pid ${pid}${o.containerId ? ` (container ${o.containerId})` : ''}`);
  let active: { socket: net.Socket; child?: ChildProcess } | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));

  const armIdle = (seconds: number) => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      o.log.info(`no client for ${seconds} s: exiting`);
      server.close();
      done();
    }, seconds * 1000);
  };

  const cleanupAfter = (childPid: number) => {
    if (o.targetless) return Promise.resolve();
    // The guard mode of the agent, in the same namespace, removes the session's chain if it is there.
    const [cmd, args] = childCommand(o, pid);
    const guard = spawn(cmd, args, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, MIRRORD_AGENT_MODE: 'guard', MIRRORD_GUARD_PID: String(childPid), MIRRORD_AGENT_SESSION: o.session },
    });
    return new Promise<void>((resolve) => guard.once('close', () => resolve()));
  };

  // pauseOnConnect: this process never reads the client's bytes. The child gets the connection itself
  // as its stdin and stdout, so the link's bytes go from the port-forward to the agent with no relay
  // through this process (which, as a pipe to the child's stdio, cost a copy and two wake-ups per read
  // on each side: bench/README.md, the Kubernetes stream).
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    if (active) {
      o.log.warn('a second client while one is connected: refused (one session per agent)');
      socket.destroy();
      return;
    }
    clearTimeout(idleTimer);
    socket.setNoDelay(true);
    socket.on('error', (err) => o.log.debug(`client socket: ${err.message}`));
    // Held from here, so that a second client is refused while the banner is on its way.
    const slot: { socket: net.Socket; child?: ChildProcess } = { socket };
    active = slot;
    // The banner goes first and alone: the child writes to the same connection once it runs.
    socket.write(AP_LISTENER_BANNER, (err) => {
      if (err || socket.destroyed) {
        o.log.debug(`client gone before the agent started${err ? `: ${err.message}` : ''}`);
        socket.destroy();
        active = undefined;
        armIdle(o.ttlSeconds);
        return;
      }
      const [cmd, args] = childCommand(o, pid);
      const child = spawn(cmd, args, {
        stdio: [socket, socket, 'inherit'],
        env: { ...process.env, MIRRORD_AGENT_MODE: 'serve', MIRRORD_AGENT_TARGET_PID: String(pid), MIRRORD_AGENT_SESSION: o.session },
      });
      slot.child = child;
      o.log.info(`client connected; agent child ${child.pid}`);
      child.once('exit', (code, signal) => {
        o.log.info(`agent child ${child.pid} ended (${signal ?? `code ${code}`})`);
        // The child's copies of the connection are closed; this one ends it for the port-forward.
        socket.destroy();
        const after = signal || code ? cleanupAfter(child.pid!) : Promise.resolve();
        void after.then(() => {
          active = undefined;
          armIdle(o.ttlSeconds);
        });
      });
    });
  });

  const stop = (sig: string) => {
    o.log.info(`${sig}: stopping`);
    server.close();
    if (active?.child) {
      active.child.kill('SIGTERM');
      active.child.once('exit', () => done());
      setTimeout(done, 3000).unref();
    } else {
      done();
    }
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Loopback only: the port-forward reaches it, the pod network does not.
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  o.log.info(`listening on 127.0.0.1:${o.port}`);
  armIdle(o.firstClientSeconds);
  await finished;
}

async function runSharedListener(o: ListenerOptions): Promise<void> {
  const pid = await resolvePid(o);
  o.log.info(`shared; target pid ${pid}${o.containerId ? ` (container ${o.containerId})` : ''}`);
  // Tests run several listeners on one machine: each its own socket.
  const sock = process.env.MIRRORD_AGENT_SHARED_SOCKET || SHARED_SOCKET;
  const [cmd, args] = childCommand(o, pid);
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      MIRRORD_AGENT_MODE: 'shared',
      MIRRORD_AGENT_TARGET_PID: String(pid),
      MIRRORD_AGENT_SESSION: o.session,
      MIRRORD_AGENT_SHARED_SOCKET: sock,
    },
  });
  const leaving = () => existsSync(`${sock}.leaving`);
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    client.on('error', (err) => o.log.debug(`client socket: ${err.message}`));
    client.pause();
    void (async () => {
      // A just-started child may not listen yet; a leaving one refuses (the CLI then starts another).
      for (let i = 0; i < 300 && !leaving(); i++) {
        const agent = await new Promise<net.Socket | undefined>((resolve) => {
          const s = net.connect(sock, () => resolve(s));
          s.once('error', () => resolve(undefined));
        });
        if (agent) {
          client.write(AP_LISTENER_BANNER);
          agent.on('error', () => client.destroy());
          client.pipe(agent).pipe(client);
          client.resume();
          return;
        }
        await sleep(50);
      }
      client.destroy();
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  o.log.info(`listening on 127.0.0.1:${o.port} for the shared agent (child ${child.pid})`);
  const stop = (sig: NodeJS.Signals) => {
    o.log.info(`${sig}: stopping`);
    child.kill('SIGTERM');
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  o.log.info(`shared agent ${child.pid} ended (${signal ?? `code ${code}`})`);
  server.close();
  if (signal || code) {
    // Killed (or crashed): the guard mode removes the agent's chain, as for a child of one session.
    const [gcmd, gargs] = childCommand(o, pid);
    const guard = spawn(gcmd, gargs, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, MIRRORD_AGENT_MODE: 'guard', MIRRORD_GUARD_PID: String(child.pid), MIRRORD_AGENT_SESSION: o.session },
    });
    await new Promise<void>((resolve) => guard.once('close', () => resolve()));
  }
}
