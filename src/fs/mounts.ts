/**
 * Mounted-file sync: the target's volumes and bind mounts, read through the agent (`fs.*` over the
 * session), streamed as one tar archive that lands at the same paths in the local side before its
 * programs read them (container mode: the sidecar's archive put into the user's container; a dev
 * container: the session daemon's, extracted as root). The walk keeps only the list of entries
 * (no content) in memory; file bytes flow from the agent to the archive one read at a time, with
 * backpressure.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type tar from 'tar-stream';

type EntryHeader = Parameters<tar.Pack['entry']>[0];
import type { ApMethods } from '../../common/protocol/agent/index.js';
import { AP_FS_MAX_READ } from '../../common/protocol/agent/index.js';
import { formatBytes } from '../../common/bytes.js';
import { escapeRegex } from '../../common/regex.js';
import type { FsSettings } from './rules.js';

/** What the sync needs of the agent link (AgentConnection in the sidecar). */
export interface FsAgent {
  request<M extends keyof ApMethods>(method: M, params: ApMethods[M]['params']): Promise<ApMethods[M]['result']>;
}

export interface SyncOptions {
  /** Largest total size of regular files; more is an error before anything is copied. */
  maxBytes: number;
  /** Paths the user mounts in the container (`-v`): those win, so nothing is copied at or under them. */
  exclude: string[];
}

export interface SyncEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname?: string;
}

export interface SyncPlan {
  roots: string[];
  entries: SyncEntry[];
  bytes: number;
}

export class SyncTooLarge extends Error {
  constructor(
    readonly bytes: number,
    readonly maxBytes: number,
    readonly where: string,
  ) {
    super(`at least ${formatBytes(bytes)} under ${where}`);
  }
}

// Docker writes these per container; a copy of the target's would be wrong in the user's.
const SKIP_EXACT = new Set(['/', '/etc/resolv.conf', '/etc/hosts', '/etc/hostname']);
// Kernel and runtime file systems (proc, sysfs, devpts, mqueue, shm, cgroups), not data.
const SKIP_TREES = ['/proc', '/sys', '/dev'];
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const DIR_BATCH = 512;

export const isUnder = (p: string, root: string) => p === root || p.startsWith(root === '/' ? '/' : `${root}/`);

/** The mount points worth copying: data mounts only, none inside another, none the user mounts over. */
export function syncRoots(mounts: string[], exclude: string[]): string[] {
  const norm = (p: string) => (p.length > 1 ? p.replace(/\/+$/, '') : p);
  const candidates = [...new Set(mounts.map(norm))]
    .filter((m) => m.startsWith('/') && !SKIP_EXACT.has(m) && !SKIP_TREES.some((t) => isUnder(m, t)))
    .filter((m) => !exclude.some((x) => isUnder(m, norm(x))))
    .sort();
  return candidates.filter((m) => !candidates.some((other) => other !== m && isUnder(m, other)));
}

/**
 * The file rules once the local side has its own copy of `roots`: in read mode the layer reads
 * (and writes) that copy, as every program without the layer does, instead of asking the target.
 * Not in write mode, and not for a path the user's own read_write/read_only rules name: those ask
 * for the target.
 */
export function withLocalCopies<F extends FsSettings>(fs: F, roots: string[]): F {
  if (fs.mode !== 'read') return fs;
  const named = [...(fs.read_write ?? []), ...(fs.read_only ?? [])].map((r) => new RegExp(r));
  const local = roots.filter((r) => !named.some((re) => re.test(r) || re.test(`${r}/`)));
  return { ...fs, local: [...(fs.local ?? []), ...local.map((r) => `^${escapeRegex(r)}(/|$)`)] };
}

/** Walks the mount points through the agent: metadata only, stopping as soon as the limit is passed. */
export async function planSync(agent: FsAgent, opts: SyncOptions): Promise<SyncPlan> {
  const { mounts } = await agent.request('fs.mounts', {});
  const roots = syncRoots(mounts, opts.exclude);
  const plan: SyncPlan = { roots, entries: [], bytes: 0 };
  const excluded = (p: string) => opts.exclude.some((x) => isUnder(p, x));
  const walk = async (path: string, root: string): Promise<void> => {
    let stat;
    try {
      stat = (await agent.request('fs.stat', { path, follow: false })).stat;
    } catch {
      return; // gone since it was listed, or unreadable: nothing to copy
    }
    const fmt = stat.mode & S_IFMT;
    const base = { path, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, mtime: stat.mtimeSec, size: 0 };
    if (fmt === S_IFREG) {
      plan.bytes += stat.size;
      if (plan.bytes > opts.maxBytes) throw new SyncTooLarge(plan.bytes, opts.maxBytes, root);
      plan.entries.push({ ...base, type: 'file', size: stat.size });
    } else if (fmt === S_IFLNK) {
      const { target } = await agent.request('fs.readlink', { path });
      plan.entries.push({ ...base, type: 'symlink', linkname: target });
    } else if (fmt === S_IFDIR) {
      plan.entries.push({ ...base, type: 'directory' });
      const { fd } = await agent.request('fs.open', { path, flags: 0, mode: 0 });
      const names: string[] = [];
      try {
        for (;;) {
          const { entries } = await agent.request('fs.readdir', { fd, max: DIR_BATCH });
          if (entries.length === 0) break;
          for (const e of entries) if (e.name !== '.' && e.name !== '..') names.push(e.name);
        }
      } finally {
        await agent.request('fs.close', { fd }).catch(() => undefined);
      }
      for (const name of names.sort()) {
        const child = path === '/' ? `/${name}` : `${path}/${name}`;
        if (!excluded(child)) await walk(child, root);
      }
    }
    // Sockets, FIFOs and devices are not data; they are left out.
  };
  for (const root of roots) await walk(root, root);
  return plan;
}

/** Writes the plan as a tar archive (paths relative to /) into `out`, reading each file through the agent. */
export async function packSync(agent: FsAgent, plan: SyncPlan, out: Writable): Promise<void> {
  // Imported here, by the one command that packs (container mode's mounts), not at every start.
  const { default: tarStream } = await import('tar-stream');
  const pack = tarStream.pack();
  pack.pipe(out);
  const done = new Promise<void>((resolve, reject) => {
    out.once('finish', resolve);
    out.once('close', resolve);
    out.once('error', reject);
    pack.once('error', reject);
  });
  for (const e of plan.entries) {
    const header = { name: e.path.slice(1), mode: e.mode, uid: e.uid, gid: e.gid, mtime: new Date(e.mtime * 1000) };
    if (e.type === 'directory') {
      await entry(pack, { ...header, type: 'directory' });
    } else if (e.type === 'symlink') {
      await entry(pack, { ...header, type: 'symlink', linkname: e.linkname ?? '' });
    } else {
      let fd: number;
      try {
        fd = (await agent.request('fs.open', { path: e.path, flags: 0, mode: 0 })).fd;
      } catch {
        continue; // removed since the walk: left out
      }
      try {
        await fileEntry(agent, pack, { ...header, type: 'file', size: e.size }, fd);
      } finally {
        await agent.request('fs.close', { fd }).catch(() => undefined);
      }
    }
  }
  pack.finalize();
  await done;
}

function entry(pack: tar.Pack, header: EntryHeader): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}

/** Exactly `size` bytes, as the header says: a file that shrank since the walk is padded with zeros. */
async function fileEntry(agent: FsAgent, pack: tar.Pack, header: EntryHeader & { size: number }, fd: number): Promise<void> {
  const w = pack.entry(header);
  const finished = new Promise<void>((resolve, reject) => {
    w.once('finish', () => resolve());
    w.once('error', reject);
  });
  let offset = 0;
  while (offset < header.size) {
    const len = Math.min(AP_FS_MAX_READ, header.size - offset);
    let chunk = (await agent.request('fs.read', { fd, offset, len })).data;
    if (chunk.length === 0) chunk = Buffer.alloc(len);
    offset += chunk.length;
    if (!w.write(chunk)) await once(w, 'drain');
  }
  (w as unknown as { end(): void }).end();
  await finished;
}
