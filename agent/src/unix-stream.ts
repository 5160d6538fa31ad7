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
import { decodeClose, decodeCredit, ApKind, type ApFrame, type ApMethods } from '../../common/protocol/agent/index.js';
import { ApStream, type FrameSink } from '../../common/link/stream.js';
import type { AgentLinkError } from '../../common/link/errors.js';
import type { Logger } from '../../common/log.js';
import { resolveInRoot } from './files-resolve.js';

type Params = ApMethods['outgoing.connect_unix']['params'];

/** sun_path's size on Linux, its NUL included. */
export const SUN_PATH_MAX = 108;
/** Linux's O_PATH (Node does not export it); the same value on x86-64 and arm64. */
const O_PATH = 0o10000000;

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

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

interface Entry {
  socket?: net.Socket;
  stream?: ApStream;
  /** The client gave up (CLOSE) while we were connecting. */
  cancelled?: boolean;
}

/** The unix stream connections of one link; client stream ids (odd) it does not hold go to OutgoingStreams. */
export class UnixStreams {
  private readonly entries = new Map<number, Entry>();
  private shutDown = false;

  constructor(
    private readonly root: string,
    private readonly send: FrameSink,
    private readonly log?: Logger,
  ) {}

  has(channel: number): boolean {
    return this.entries.has(channel);
  }

  /** Connects; `start`, called right after the RESPONSE is sent, lets bytes flow. */
  async connect(p: Params): Promise<{ start: () => void }> {
    if (p.stream % 2 !== 1) throw codeError('EINVAL', `stream ${p.stream}: client streams use odd ids`);
    if (this.shutDown) throw codeError('ECONNABORTED', 'the agent is shutting down');
    if (this.entries.has(p.stream)) throw codeError('EEXIST', `stream ${p.stream} is already open`);
    const entry: Entry = {};
    this.entries.set(p.stream, entry);
    let socket: net.Socket;
    try {
      socket = await connectUnixInRoot(this.root, p.path);
    } catch (err) {
      if (this.entries.get(p.stream) === entry) this.entries.delete(p.stream);
      throw err;
    }
    if (this.shutDown || entry.cancelled || this.entries.get(p.stream) !== entry) {
      socket.destroy();
      throw codeError('ECONNABORTED', `connect ${p.path} aborted`);
    }
    entry.socket = socket;
    const stream = new ApStream(p.stream, this.send, () => undefined);
    entry.stream = stream;
    const id = p.stream;
    const start = () => {
      this.log?.debug(`stream ${id}: connected to unix socket ${p.path} in the target`);
      socket.on('error', (err) => stream.destroy(err));
      stream.on('error', (err) => {
        this.log?.debug(`stream ${id}: ${err.message}`);
        socket.destroy();
      });
      stream.on('close', () => {
        if (!socket.writableEnded || !socket.readableEnded) socket.destroy();
      });
      socket.on('close', () => {
        if (this.entries.get(id) === entry) this.entries.delete(id);
        if (!stream.destroyed && stream.writableFinished && stream.readableEnded) stream.destroy();
      });
      socket.pipe(stream);
      stream.pipe(socket);
    };
    return { start };
  }

  onData(channel: number, pieces: Buffer[], length: number): void {
    this.entries.get(channel)?.stream?.onData(pieces, length);
  }

  onFrame(f: ApFrame): void {
    const entry = this.entries.get(f.channel);
    if (!entry) return;
    switch (f.kind) {
      case ApKind.DATA:
        entry.stream?.onData(f.payload);
        return;
      case ApKind.EOF:
        entry.stream?.onEof();
        return;
      case ApKind.CREDIT:
        entry.stream?.onCredit(decodeCredit(f));
        return;
      case ApKind.CLOSE: {
        const { error } = decodeClose(f);
        if (entry.stream) entry.stream.onClose(error);
        else entry.cancelled = true;
        return;
      }
    }
  }

  async closeAll(reason: AgentLinkError): Promise<void> {
    this.shutDown = true;
    const closing = [...this.entries.values()].map(
      ({ socket, stream }) =>
        new Promise<void>((resolve) => {
          if (!socket || socket.closed) return resolve();
          socket.once('close', () => resolve());
          stream?.linkLost(reason);
          socket.destroy();
        }),
    );
    this.entries.clear();
    await Promise.all(closing);
  }
}
