/**
 * The intproxy's side of remote files: applies the fs rules (src/fs/rules.ts) to each request of a
 * layer, forwards the remote ones to the agent (fs.* methods) and keeps a per-handle read-ahead
 * block so sequential reads cost one agent round trip per READ_AHEAD bytes.
 *
 * Handles are the agent's file numbers. A handle is referenced by the layer connection that opened
 * it and by the connections of processes forked from it while it was open (their HELLO names the
 * parent); the agent file is closed when the last reference goes (close, or a connection ending).
 */
import os from 'node:os';
import { FS_MAX_IO, FS_ZERO_STAT, type FsRequest, type FsResponse } from '../../common/protocol/layer/index.js';
import { AP_FS_MAX_READ } from '../../common/protocol/agent/fs.js';
import type { Logger } from '../../common/log.js';
import { FsRules, type FsAccess, type FsDecision, type FsSettings } from '../fs/rules.js';
import type { RequestAgentPort } from './agent-port.js';

const BYPASS = 1;
/** Default read-ahead, and its ceiling: the agent answers at most AP_FS_MAX_READ bytes per fs.read. */
const READ_AHEAD = AP_FS_MAX_READ;
const O_ACCMODE = 3;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const DIR_BATCH = 128;

/** Node error code -> negative errno for the layer (link trouble and unknown codes: EIO). */
export function fsErrno(err: unknown): number {
  const code = (err as { code?: string }).code;
  const n = code ? (os.constants.errno as Record<string, number>)[code] : undefined;
  return n ? -n : -os.constants.errno.EIO;
}

interface Handle {
  fd: number;
  refs: number;
  path: string;
  writable: boolean;
  block?: { offset: number; data: Buffer };
  /** The block after `block`, asked for while the program still reads `block` (sequential reads). */
  next?: { offset: number; data: Promise<Buffer | undefined> };
}

export class FileProxy {
  private rulesP?: Promise<FsRules>;
  private readonly handles = new Map<number, Handle>();
  /** connection id -> handle -> references held by that connection. */
  private readonly byConn = new Map<number, Map<number, number>>();
  private readonly connOfPid = new Map<number, number>();
  readonly stats = { opens: 0, agentReads: 0, readsServed: 0 };
  /** The program's executable (its directory is local by default); set before rules() is first called. */
  exe?: string;
  /** Bytes asked of the agent per read (feature.fs.readonly_file_buffer); 0: exactly what the program asks, nothing kept. */
  private readonly readAhead: number;

  constructor(
    private readonly agent: RequestAgentPort | undefined,
    private readonly settings: FsSettings & { readonly_file_buffer?: number },
    private readonly log: Logger,
  ) {
    this.readAhead = Math.min(settings.readonly_file_buffer ?? READ_AHEAD, READ_AHEAD);
  }

  /** The rules, with the target's mount points (asked once). */
  rules(): Promise<FsRules> {
    this.rulesP ??= (async () => {
      let mounts: string[] = [];
      if (this.settings.mode !== 'local' && this.agent) {
        try {
          mounts = (await this.agent.request('fs.mounts', {})).mounts;
        } catch (err) {
          // A link that closed is the session ending (the mounts are asked early, beside other
          // start-up requests): its own error is what the user sees.
          const closed = (err as { code?: string }).code === 'ELINK';
          this.log[closed ? 'debug' : 'warn'](`cannot list the target's mounts: ${(err as Error).message}`);
        }
      }
      const rules = new FsRules(this.settings, { mounts, cwd: process.cwd(), home: os.homedir(), exe: this.exe });
      this.log.debug(`fs mode ${rules.mode}; target mounts: ${mounts.join(', ') || '(none)'}`);
      return rules;
    })();
    return this.rulesP;
  }

  onHello(conn: number, pid: number, parentPid: number): void {
    this.connOfPid.set(pid, conn);
    const refs = new Map<number, number>();
    this.byConn.set(conn, refs);
    const parent = parentPid ? this.connOfPid.get(parentPid) : undefined;
    const inherited = parent !== undefined ? this.byConn.get(parent) : undefined;
    // A forked child holds the parent's descriptors: it may use (and must close) the same handles.
    for (const h of inherited?.keys() ?? []) this.ref(conn, h);
  }

  /** The layer connection ended: its references go, and with the last one the agent's file. */
  onConnectionClosed(conn: number): void {
    const refs = this.byConn.get(conn);
    this.byConn.delete(conn);
    for (const [pid, c] of this.connOfPid) if (c === conn) this.connOfPid.delete(pid);
    for (const [h, n] of refs ?? []) for (let i = 0; i < n; i++) void this.unref(h);
  }

  private ref(conn: number, h: number): void {
    const handle = this.handles.get(h);
    if (!handle) return;
    handle.refs++;
    const refs = this.byConn.get(conn) ?? new Map<number, number>();
    this.byConn.set(conn, refs);
    refs.set(h, (refs.get(h) ?? 0) + 1);
  }

  private async unref(h: number): Promise<number> {
    const handle = this.handles.get(h);
    if (!handle) return fsErrno({ code: 'EBADF' });
    if (--handle.refs > 0) return 0;
    this.handles.delete(h);
    try {
      await this.agent?.request('fs.close', { fd: h });
      return 0;
    } catch (err) {
      return fsErrno(err);
    }
  }

  /** The handle if this connection holds it. */
  private held(conn: number, h: number): Handle | undefined {
    return this.byConn.get(conn)?.has(h) ? this.handles.get(h) : undefined;
  }

  private async decide(path: string, access: FsAccess): Promise<FsDecision> {
    const d = (await this.rules()).decide(path, access);
    this.log.debug(`${access} ${path}: ${d.kind} (${d.why})`);
    return d;
  }

  /** feature.fs.mapping: the path the target is asked for (and the rules decide on). */
  private async mapped<T extends FsRequest>(q: T): Promise<T> {
    const rules = await this.rules();
    if (!('path' in q) || q.path === '') return q;
    const path = rules.mapPath(q.path);
    const path2 = 'path2' in q ? rules.mapPath(q.path2) : undefined;
    if (path !== q.path) this.log.debug(`fs.mapping: ${q.path} -> ${path}`);
    return { ...q, path, ...(path2 !== undefined ? { path2 } : {}) };
  }

  async handle(conn: number, asked: FsRequest): Promise<FsResponse> {
    const q = await this.mapped(asked);
    const id = q.id;
    const agent = this.agent;
    try {
      switch (q.kind) {
        case 'open': {
          const writing = (q.flags & O_ACCMODE) !== 0 || (q.flags & (O_CREAT | O_TRUNC | O_APPEND)) !== 0;
          const d = await this.decide(q.path, writing ? 'write' : 'read');
          const none = { id, kind: q.kind, handle: 0, stat: FS_ZERO_STAT };
          if (d.kind === 'local' || !agent) return { ...none, status: BYPASS };
          if (d.kind === 'not_found') return { ...none, status: fsErrno({ code: 'ENOENT' }) };
          const r = await agent.request('fs.open', { path: q.path, flags: q.flags, mode: q.mode });
          this.handles.set(r.fd, { fd: r.fd, refs: 0, path: q.path, writable: writing });
          this.ref(conn, r.fd);
          this.stats.opens++;
          return { id, kind: q.kind, status: 0, handle: r.fd, stat: r.stat };
        }
        case 'read': {
          const h = this.held(conn, q.handle);
          if (!h || !agent) return { id, kind: q.kind, status: fsErrno({ code: 'EBADF' }), data: Buffer.alloc(0) };
          const len = Math.min(q.len, FS_MAX_IO);
          if (this.readAhead === 0) {
            // No buffer: every read is one agent read of exactly what the program asked.
            const r = await agent.request('fs.read', { fd: q.handle, offset: q.offset, len });
            this.stats.agentReads++;
            this.stats.readsServed++;
            return { id, kind: q.kind, status: 0, data: r.data };
          }
          const ahead = Math.max(this.readAhead, len);
          // A block serves any read starting inside it (a short read near its end is fine).
          const inside = (blk?: { offset: number; data: Buffer }) => !!blk && q.offset >= blk.offset && q.offset < blk.offset + blk.data.length;
          let b = h.block;
          if (!inside(b) && h.next && h.next.offset === q.offset) {
            const data = await h.next.data;
            h.next = undefined;
            if (data) h.block = b = { offset: q.offset, data };
          }
          if (!inside(b)) {
            h.next = undefined;
            const r = await agent.request('fs.read', { fd: q.handle, offset: q.offset, len: ahead });
            this.stats.agentReads++;
            b = { offset: q.offset, data: r.data };
            h.block = b;
          }
          b ??= { offset: q.offset, data: Buffer.alloc(0) };
          // Sequential reading: ask for the following block while this one is being consumed.
          const end = b.offset + b.data.length;
          if (b.data.length === ahead && !h.next && q.offset + len > b.offset + ahead / 2) {
            const fd = q.handle;
            h.next = {
              offset: end,
              data: agent.request('fs.read', { fd, offset: end, len: ahead }).then(
                (r) => {
                  this.stats.agentReads++;
                  return r.data;
                },
                () => undefined,
              ),
            };
          }
          this.stats.readsServed++;
          const from = Math.min(q.offset - b.offset, b.data.length);
          return { id, kind: q.kind, status: 0, data: b.data.subarray(from, Math.min(from + len, b.data.length)) };
        }
        case 'write': {
          const h = this.held(conn, q.handle);
          if (!h || !agent) return { id, kind: q.kind, status: fsErrno({ code: 'EBADF' }), written: 0, offset: 0 };
          h.block = undefined;
          h.next = undefined;
          const r = await agent.request('fs.write', { fd: q.handle, offset: q.offset, data: q.data.toString('base64') });
          return { id, kind: q.kind, status: 0, written: r.written, offset: r.offset };
        }
        case 'close': {
          const refs = this.byConn.get(conn);
          const n = refs?.get(q.handle);
          if (!refs || !n) return { id, kind: q.kind, status: fsErrno({ code: 'EBADF' }) };
          if (n > 1) refs.set(q.handle, n - 1);
          else refs.delete(q.handle);
          return { id, kind: q.kind, status: await this.unref(q.handle) };
        }
        case 'stat': {
          if (q.path === '') {
            const h = this.held(conn, q.handle);
            if (!h || !agent) return { id, kind: q.kind, status: fsErrno({ code: 'EBADF' }), stat: FS_ZERO_STAT };
            return { id, kind: q.kind, status: 0, stat: (await agent.request('fs.fstat', { fd: q.handle })).stat };
          }
          const d = await this.decide(q.path, 'read');
          if (d.kind === 'local' || !agent) return { id, kind: q.kind, status: BYPASS, stat: FS_ZERO_STAT };
          if (d.kind === 'not_found') return { id, kind: q.kind, status: fsErrno({ code: 'ENOENT' }), stat: FS_ZERO_STAT };
          const r = await agent.request('fs.stat', { path: q.path, follow: (q.flags & AT_SYMLINK_NOFOLLOW) === 0 });
          return { id, kind: q.kind, status: 0, stat: r.stat };
        }
        case 'access':
        case 'readlink': {
          const d = await this.decide(q.path, 'read');
          const base = q.kind === 'readlink' ? { id, kind: q.kind, target: '' } : { id, kind: q.kind };
          if (d.kind === 'local' || !agent) return { ...base, status: BYPASS } as FsResponse;
          if (d.kind === 'not_found') return { ...base, status: fsErrno({ code: 'ENOENT' }) } as FsResponse;
          if (q.kind === 'access') {
            await agent.request('fs.access', { path: q.path, mode: q.mode & 7 });
            return { id, kind: q.kind, status: 0 };
          }
          const r = await agent.request('fs.readlink', { path: q.path });
          return { id, kind: q.kind, status: 0, target: r.target };
        }
        case 'getdents': {
          const h = this.held(conn, q.handle);
          if (!h || !agent) return { id, kind: q.kind, status: fsErrno({ code: 'EBADF' }), entries: [] };
          const r = await agent.request('fs.readdir', { fd: q.handle, max: DIR_BATCH });
          return { id, kind: q.kind, status: 0, entries: r.entries };
        }
        case 'mkdir':
        case 'unlink':
        case 'rename': {
          const d = await this.decide(q.path, 'write');
          if (q.kind === 'rename') {
            const d2 = await this.decide(q.path2, 'write');
            const remote1 = d.kind === 'remote-rw';
            const remote2 = d2.kind === 'remote-rw';
            if (d.kind === 'not_found') return { id, kind: q.kind, status: fsErrno({ code: 'ENOENT' }) };
            if (!remote1 && !remote2) return { id, kind: q.kind, status: BYPASS };
            if (remote1 !== remote2) return { id, kind: q.kind, status: fsErrno({ code: 'EXDEV' }) };
            await agent!.request('fs.rename', { from: q.path, to: q.path2 });
            return { id, kind: q.kind, status: 0 };
          }
          if (d.kind === 'not_found') return { id, kind: q.kind, status: fsErrno({ code: 'ENOENT' }) };
          if (d.kind !== 'remote-rw' || !agent) return { id, kind: q.kind, status: BYPASS };
          if (q.kind === 'mkdir') await agent.request('fs.mkdir', { path: q.path, mode: q.mode });
          else await agent.request('fs.unlink', { path: q.path, dir: (q.flags & AT_REMOVEDIR) !== 0 });
          return { id, kind: q.kind, status: 0 };
        }
      }
    } catch (err) {
      const status = fsErrno(err);
      this.log.debug(`${q.kind} failed in the target: ${(err as Error).message}`);
      return errorResponse(q, status);
    }
  }

  /** Resolves once no remote file is open (or after `ms`): the CLI waits on it before leaving. */
  async idle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.handles.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** Every remote file the session holds (the CLI closes them when the session ends). */
  async closeAll(): Promise<void> {
    const fds = [...this.handles.keys()];
    this.handles.clear();
    this.byConn.clear();
    const agent = this.agent;
    if (agent) await Promise.all(fds.map((fd) => agent.request('fs.close', { fd }).catch(() => undefined)));
  }
}

function errorResponse(q: FsRequest, status: number): FsResponse {
  const id = q.id;
  switch (q.kind) {
    case 'open':
      return { id, kind: q.kind, status, handle: 0, stat: FS_ZERO_STAT };
    case 'read':
      return { id, kind: q.kind, status, data: Buffer.alloc(0) };
    case 'write':
      return { id, kind: q.kind, status, written: 0, offset: 0 };
    case 'stat':
      return { id, kind: q.kind, status, stat: FS_ZERO_STAT };
    case 'readlink':
      return { id, kind: q.kind, status, target: '' };
    case 'getdents':
      return { id, kind: q.kind, status, entries: [] };
    default:
      return { id, kind: q.kind, status };
  }
}
