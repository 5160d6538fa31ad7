/**
 * `outgoing.connect_unix` (feature.network.outgoing.unix_streams): a connection to a unix stream
 * socket inside the target's file system (its mount namespace, reached through /proc/PID/root),
 * bridged to one AP stream like an outgoing TCP connection: half-close both ways, credit flow
 * control in ApStream.
 *
 * sun_path holds at most 107 bytes and /proc/PID/root/... easily exceeds it: the socket's
 * directory is then opened O_PATH and the socket reached as /proc/self/fd/N/NAME.
 */
import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ApMethods } from '../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../common/link/stream.js';
import type { Logger } from '../../common/log.js';
import { resolveInRoot } from './files-resolve.js';
import { SocketStreams, codeError, type StreamEntry } from './socket-streams.js';

type Params = ApMethods['outgoing.connect_unix']['params'];

/** sun_path's size on Linux, its NUL included. */
export const SUN_PATH_MAX = 108;
/** Linux's O_PATH (Node does not export it); the same value on x86-64 and arm64. */
const O_PATH = 0o10000000;

/**
 * Connects to the socket `inside` names in the file system under `root`, symlinks resolved as the
 * target would (an absolute link stays under its root). Errors are the kernel's (ENOENT,
 * ECONNREFUSED, EACCES, ...), ENAMETOOLONG when even the short form does not fit.
 */
export async function connectUnixInRoot(root: string, inside: string, timeoutMs = 20_000): Promise<net.Socket> {
  const r = await resolveInRoot(root, inside, true);
  if (r.missing) throw codeError('ENOENT', `${inside}: no such file in the target`);
  let dirFd: number | undefined;
  let at = r.host;
  if (Buffer.byteLength(at) >= SUN_PATH_MAX) {
    dirFd = openSync(path.dirname(r.host), O_PATH | constants.O_DIRECTORY);
    at = `/proc/self/fd/${dirFd}/${path.basename(r.host)}`;
  }
  try {
    if (Buffer.byteLength(at) >= SUN_PATH_MAX) throw codeError('ENAMETOOLONG', `${inside}: its file name is too long for a unix socket address`);
    const socket = net.connect({ path: at, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(codeError('ETIMEDOUT', `connect ${inside} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      });
    });
    return socket;
  } finally {
    if (dirFd !== undefined) closeSync(dirFd);
  }
}

/** The unix stream connections of one link; client stream ids (odd) it does not hold go to OutgoingStreams. */
export class UnixStreams extends SocketStreams {
  constructor(
    private readonly root: string,
    private readonly send: FrameSink,
    log?: Logger,
  ) {
    super(log);
  }

  /** Connects; `start`, called right after the RESPONSE is sent, lets bytes flow. */
  async connect(p: Params): Promise<{ start: () => void }> {
    const entry: StreamEntry = {};
    this.claim(p.stream, entry);
    let socket: net.Socket;
    try {
      socket = await connectUnixInRoot(this.root, p.path);
    } catch (err) {
      this.release(p.stream, entry);
      throw err;
    }
    if (!this.stillWanted(p.stream, entry)) {
      socket.destroy();
      throw codeError('ECONNABORTED', `connect ${p.path} aborted`);
    }
    entry.socket = socket;
    const stream = new ApStream(p.stream, this.send, () => undefined);
    entry.stream = stream;
    return { start: () => this.splice(p.stream, entry, socket, stream, `unix socket ${p.path} in the target`) };
  }
}
