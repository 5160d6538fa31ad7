/**
 * One agent, many sessions (Docker targets with agent.shared). The shared agent serves every
 * session of its target: each CLI joins with `docker exec` of the agent image in join mode, a relay
 * between the exec's stdio and the agent's unix socket. The relay's first line names the session
 * and its token (anyone who can exec into the agent container is already root in it); after it,
 * the connection is an ordinary AP link with its own handshake, served by its own serveAgent: its
 * own streams, files and subscriptions, isolated from the other sessions'. All of them share the
 * agent's port table (one chain, named for the agent). The agent leaves `ttl` seconds after its
 * last session, rules removed.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../../common/log.js';
import { AP_JOINED_LINE, AP_JOIN_LEAVING } from '../../common/protocol/agent/index.js';
import { chainName } from './incoming/iptables.js';
import { PortTable } from './incoming/ports.js';
import { serveAgent } from './server.js';
import { openStdout } from './stdio.js';

/** Where the shared agent listens, inside its own container. */
export const SHARED_SOCKET = '/run/mirrord-agent.sock';
/** Written as the agent starts to leave: a relay that sees it gives up at once (the CLI starts a new agent). */
const leavingFile = (socketPath: string) => `${socketPath}.leaving`;

const MAX_JOIN_LINE = 1024;

export interface SharedOptions {
  /** The agent's id: names its chain (the guard and every sweep know it by its environment). */
  session: string;
  targetPid: number;
  ttlSeconds: number;
  /** How long to wait for the first session. */
  firstJoinSeconds: number;
  log: Logger;
  socketPath?: string;
  /**
   * A second socket, in a directory the CLI bind-mounts from the host (a local engine): a session
   * of the same host user joins by connecting to it, without the relay's `docker exec` (the warm
   * start). Who may connect is decided on the host: the directory above it is that user's, 0700.
   */
  hostSocketPath?: string;
}

export interface JoinedSession {
  session: string;
  client: string;
  since: Date;
}

export async function runShared(o: SharedOptions): Promise<void> {
  const socketPath = o.socketPath ?? SHARED_SOCKET;
  const ports = new PortTable({ chain: chainName(o.session), log: o.log.child('ports') });
  const sessions = new Map<net.Socket, JoinedSession>();
  let idle: NodeJS.Timeout | undefined;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let swept = false;

  const armIdle = (seconds: number) => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      if (sessions.size > 0) return;
      o.log.info(`no session for ${seconds} s: leaving`);
      markLeaving();
      server.close();
      done();
    }, seconds * 1000);
  };

  const serve = (socket: net.Socket, hello: { session: string; token: string }, rest: Buffer) => {
    clearTimeout(idle);
    const joined: JoinedSession = { session: hello.session, client: '', since: new Date() };
    sessions.set(socket, joined);
    o.log.info(`session ${hello.session} joined (${sessions.size} now)`);
    if (rest.length) socket.unshift(rest);
    const sweepAtStart = !swept;
    swept = true;
    void serveAgent(socket, { token: hello.token, targetPid: o.targetPid, log: o.log.child(hello.session), session: hello.session, ports, sweepAtStart }).then(
      () => {
        sessions.delete(socket);
        socket.destroy();
        o.log.info(`session ${hello.session} left (${sessions.size} now)`);
        if (sessions.size === 0) armIdle(o.ttlSeconds);
      },
    );
    // Paused while the join line was read; a 'data' listener alone does not undo an explicit pause.
    socket.resume();
  };

  const onConnection = (socket: net.Socket) => {
    // A relay that connected keeps the agent, even before its join line is read.
    clearTimeout(idle);
    socket.once('close', () => {
      if (!sessions.has(socket) && sessions.size === 0) armIdle(o.ttlSeconds);
    });
    socket.on('error', (err) => o.log.debug(`join socket: ${err.message}`));
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > MAX_JOIN_LINE) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      let hello: { session?: unknown; token?: unknown };
      try {
        hello = JSON.parse(buf.subarray(0, nl).toString('utf8')) as typeof hello;
      } catch {
        hello = {};
      }
      if (typeof hello.session !== 'string' || typeof hello.token !== 'string' || !hello.token) {
        o.log.warn('a join without a session and token: refused');
        return void socket.destroy();
      }
      serve(socket, { session: hello.session, token: hello.token }, buf.subarray(nl + 1));
    };
    socket.on('data', onData);
  };
  const server = net.createServer(onConnection);
  const hostServer = o.hostSocketPath ? net.createServer(onConnection) : undefined;
  const paths = [socketPath, ...(o.hostSocketPath ? [o.hostSocketPath] : [])];
  const markLeaving = () => {
    for (const p of paths) fs.writeFileSync(leavingFile(p), '');
    hostServer?.close();
  };

  for (const p of paths) {
    fs.rmSync(p, { force: true });
    fs.rmSync(leavingFile(p), { force: true });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o600);
  if (hostServer && o.hostSocketPath) {
    const hostPath = o.hostSocketPath;
    await new Promise<void>((resolve) => {
      hostServer.once('error', (err) => {
        o.log.info(`no host socket (${err.message}): sessions join through docker exec`);
        resolve();
      });
      hostServer.listen(hostPath, () => {
        // The host user's 0700 directory above this one keeps everyone else out.
        fs.chmodSync(hostPath, 0o666);
        resolve();
      });
    });
  }
  o.log.info(`shared agent for target pid ${o.targetPid} on ${socketPath}`);
  armIdle(o.firstJoinSeconds);

  const stop = (sig: string) => {
    o.log.info(`${sig}: leaving`);
    markLeaving();
    for (const s of sessions.keys()) s.destroy();
    server.close();
    done();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  await finished;
  // Every session's serveAgent has let go of its subscriptions; the chain goes last.
  await ports.close();
  for (const p of paths) fs.rmSync(p, { force: true });
}

/**
 * Join mode: the relay `docker exec` runs for one session. It connects to the shared agent's
 * socket (retrying while a just-started agent is not listening yet), sends the join line, then
 * copies bytes both ways until either side ends.
 */
export async function runJoin(o: { session: string; token: string; log: Logger; socketPath?: string; timeoutMs?: number }): Promise<number> {
  const socketPath = o.socketPath ?? SHARED_SOCKET;
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  let socket: net.Socket;
  for (;;) {
    if (fs.existsSync(leavingFile(socketPath))) {
      o.log.info('the shared agent is leaving: not joining');
      return AP_JOIN_LEAVING;
    }
    try {
      socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath, () => resolve(s));
        s.once('error', reject);
      });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the shared agent does not answer on ${socketPath}: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  socket.write(`${JSON.stringify({ session: o.session, token: o.token })}\n`);
  process.stderr.write(`${AP_JOINED_LINE}\n`);
  const out = openStdout();
  process.stdin.pipe(socket);
  socket.pipe(out);
  await new Promise<void>((resolve) => {
    socket.once('close', resolve);
    process.stdin.once('end', () => socket.end());
    socket.once('error', () => resolve());
  });
  return 0;
}
