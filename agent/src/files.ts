/**
 * `fs.*`: the target's files, for the layer's remote file operations (through the intproxy).
 * Paths are resolved with resolveInRoot (files-resolve.ts), never by the kernel from a string, and
 * the last component is opened with O_NOFOLLOW. Memory per open file is bounded: reads are at
 * most AP_FS_MAX_READ per request, directories are streamed (fs.opendir, 32 entries buffered),
 * nothing is cached. Every descriptor is closed when the link ends (closeAll) and at most
 * MAX_OPEN are open per link.
 */
import { constants, type BigIntStats, type Dir } from 'node:fs';
import { access, lstat, mkdir, open, opendir, rename, rmdir, unlink, readlink, type FileHandle } from 'node:fs/promises';
import { readProcText } from './proc.js';
import type { ApDirent, ApFileMethods, FileStat } from '../../common/protocol/agent/index.js';
import type { Logger } from '../../common/log.js';
import { resolveInRoot } from './files-resolve.js';

type P<M extends keyof ApFileMethods> = ApFileMethods[M]['params'];
type R<M extends keyof ApFileMethods> = ApFileMethods[M]['result'];

const MAX_OPEN = 1024;
const fail = (code: string, message: string) => Object.assign(new Error(message), { code });

export function toApStat(s: BigIntStats): FileStat {
  const n = (v: bigint) => Number(v);
  return {
    dev: n(s.dev),
    ino: n(s.ino),
    mode: n(s.mode),
    nlink: n(s.nlink),
    uid: n(s.uid),
    gid: n(s.gid),
    rdev: n(s.rdev),
    size: n(s.size),
    blksize: n(s.blksize),
    blocks: n(s.blocks),
    atimeSec: n(s.atimeNs / 1_000_000_000n),
    atimeNsec: n(s.atimeNs % 1_000_000_000n),
    mtimeSec: n(s.mtimeNs / 1_000_000_000n),
    mtimeNsec: n(s.mtimeNs % 1_000_000_000n),
    ctimeSec: n(s.ctimeNs / 1_000_000_000n),
    ctimeNsec: n(s.ctimeNs % 1_000_000_000n),
  };
}

interface OpenFile {
  file?: FileHandle;
  dir?: Dir;
  path: string;
}

const DT = { unknown: 0, fifo: 1, chr: 2, dir: 4, blk: 6, reg: 8, lnk: 10, sock: 12 };

export class FileService {
  private readonly open = new Map<number, OpenFile>();
  private nextFd = 1;
  private closed = false;

  constructor(
    private readonly root: string,
    private readonly procRoot: string,
    private readonly targetPid: number,
    private readonly log?: Logger,
  ) {}

  get openCount(): number {
    return this.open.size;
  }

  private get(fd: number): OpenFile {
    const f = this.open.get(fd);
    if (!f) throw fail('EBADF', `no open file ${fd}`);
    return f;
  }

  private add(f: OpenFile): number {
    if (this.closed) {
      void f.file?.close();
      void f.dir?.close().catch(() => undefined);
      throw fail('ELINK', 'the link ended');
    }
    while (this.open.has(this.nextFd)) this.nextFd = (this.nextFd % 0xfffffff0) + 1;
    const fd = this.nextFd++;
    this.open.set(fd, f);
    return fd;
  }

  async openFile(p: P<'fs.open'>): Promise<R<'fs.open'>> {
    if (this.open.size >= MAX_OPEN) throw fail('EMFILE', 'too many remote files open');
    const nofollow = (p.flags & constants.O_NOFOLLOW) !== 0;
    const creating = (p.flags & constants.O_CREAT) !== 0;
    const excl = creating && (p.flags & constants.O_EXCL) !== 0;
    const r = await resolveInRoot(this.root, p.path, !nofollow && !excl);
    if (r.missing && !creating) throw fail('ENOENT', `${p.path}: no such file or directory`);
    const wantsDir = (p.flags & constants.O_DIRECTORY) !== 0;
    // The resolved path has no symlink left but (maybe) the last component: O_NOFOLLOW makes the
    // kernel refuse it (ELOOP) rather than follow it outside the root.
    const flags = (p.flags & ~((constants.O_DIRECTORY | 0x400000) /* O_PATH */)) | constants.O_NOFOLLOW; // libuv adds O_CLOEXEC
    const st0 = r.missing ? undefined : await lstat(r.host, { bigint: true });
    if (st0?.isDirectory() || wantsDir) {
      if (!st0?.isDirectory()) throw fail(st0 ? 'ENOTDIR' : 'ENOENT', `${p.path}: not a directory`);
      if ((p.flags & 3) !== constants.O_RDONLY) throw fail('EISDIR', `${p.path}: is a directory`);
      const dir = await opendir(r.host, { bufferSize: 32 });
      const fd = this.add({ dir, path: r.inside });
      return { fd, stat: toApStat(st0) };
    }
    const file = await open(r.host, flags, p.mode);
    try {
      const st = await file.stat({ bigint: true });
      const fd = this.add({ file, path: r.inside });
      this.log?.debug(`open ${r.inside} -> ${fd}`);
      return { fd, stat: toApStat(st) };
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  async read(p: P<'fs.read'>): Promise<R<'fs.read'>> {
    const f = this.get(p.fd);
    if (!f.file) throw fail('EISDIR', 'is a directory');
    const buf = Buffer.allocUnsafe(p.len);
    const { bytesRead } = await f.file.read(buf, 0, p.len, p.offset);
    return { data: buf.subarray(0, bytesRead) };
  }

  async write(p: P<'fs.write'>): Promise<R<'fs.write'>> {
    const f = this.get(p.fd);
    if (!f.file) throw fail('EISDIR', 'is a directory');
    const data = Buffer.from(p.data, 'base64');
    let offset = p.offset;
    if (offset < 0) offset = Number((await f.file.stat({ bigint: true })).size);
    const { bytesWritten } = await f.file.write(data, 0, data.length, offset);
    return { written: bytesWritten, offset: offset + bytesWritten };
  }

  async close(p: P<'fs.close'>): Promise<R<'fs.close'>> {
    const f = this.get(p.fd);
    this.open.delete(p.fd);
    await (f.file ? f.file.close() : f.dir?.close());
    return {};
  }

  async stat(p: P<'fs.stat'>): Promise<R<'fs.stat'>> {
    const r = await resolveInRoot(this.root, p.path, p.follow);
    if (r.missing) throw fail('ENOENT', `${p.path}: no such file or directory`);
    // lstat: the resolved path has no symlink left except, when !follow, the last component itself.
    return { stat: toApStat(await lstat(r.host, { bigint: true })) };
  }

  async fstat(p: P<'fs.fstat'>): Promise<R<'fs.fstat'>> {
    const f = this.get(p.fd);
    if (f.file) return { stat: toApStat(await f.file.stat({ bigint: true })) };
    const r = await resolveInRoot(this.root, f.path, true);
    return { stat: toApStat(await lstat(r.host, { bigint: true })) };
  }

  async access(p: P<'fs.access'>): Promise<R<'fs.access'>> {
    const r = await resolveInRoot(this.root, p.path, true);
    if (r.missing) throw fail('ENOENT', `${p.path}: no such file or directory`);
    const st = await lstat(r.host);
    if (st.isSymbolicLink()) throw fail('ELOOP', 'symlink');
    await access(r.host, p.mode);
    return {};
  }

  async readlink(p: P<'fs.readlink'>): Promise<R<'fs.readlink'>> {
    const r = await resolveInRoot(this.root, p.path, false);
    if (r.missing) throw fail('ENOENT', `${p.path}: no such file or directory`);
    return { target: await readlink(r.host) };
  }

  async readdir(p: P<'fs.readdir'>): Promise<R<'fs.readdir'>> {
    const f = this.get(p.fd);
    if (!f.dir) throw fail('ENOTDIR', 'not a directory');
    const entries: ApDirent[] = [];
    while (entries.length < p.max) {
      const e = await f.dir.read();
      if (!e) break;
      const type = e.isFile()
        ? DT.reg
        : e.isDirectory()
          ? DT.dir
          : e.isSymbolicLink()
            ? DT.lnk
            : e.isFIFO()
              ? DT.fifo
              : e.isSocket()
                ? DT.sock
                : e.isCharacterDevice()
                  ? DT.chr
                  : e.isBlockDevice()
                    ? DT.blk
                    : DT.unknown;
      // Node's Dirent has no inode number: a stable non-zero stand-in (readdir callers rarely use it).
      entries.push({ name: e.name, type, ino: 0 });
    }
    return { entries };
  }

  async mkdir(p: P<'fs.mkdir'>): Promise<R<'fs.mkdir'>> {
    const r = await resolveInRoot(this.root, p.path, false);
    if (!r.missing) throw fail('EEXIST', `${p.path}: exists`);
    await mkdir(r.host, { mode: p.mode });
    return {};
  }

  async unlink(p: P<'fs.unlink'>): Promise<R<'fs.unlink'>> {
    const r = await resolveInRoot(this.root, p.path, false);
    if (r.missing) throw fail('ENOENT', `${p.path}: no such file or directory`);
    await (p.dir ? rmdir(r.host) : unlink(r.host));
    return {};
  }

  async rename(p: P<'fs.rename'>): Promise<R<'fs.rename'>> {
    const from = await resolveInRoot(this.root, p.from, false);
    if (from.missing) throw fail('ENOENT', `${p.from}: no such file or directory`);
    const to = await resolveInRoot(this.root, p.to, false);
    await rename(from.host, to.host);
    return {};
  }

  /** Mount points of the target from its mountinfo (field 5 is the mount point, octal-escaped). */
  async mounts(): Promise<R<'fs.mounts'>> {
    let text: string;
    try {
      text = await readProcText(`${this.procRoot}/${this.targetPid}/mountinfo`);
    } catch (err) {
      this.log?.debug(`no mountinfo: ${(err as Error).message}`);
      return { mounts: [] };
    }
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    const mounts = new Set<string>();
    for (const line of text.split('\n')) {
      const f = line.split(' ');
      const at = f[4];
      if (f.length > 5 && at) mounts.add(unescape(at));
    }
    return { mounts: [...mounts] };
  }

  /** The link ended: every descriptor goes. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((f) => Promise.resolve(f.file ? f.file.close() : f.dir?.close()).catch(() => undefined)));
  }
}

type FileHandlers = { [M in keyof ApFileMethods]: (p: P<M>) => Promise<{ result: R<M> }> };

/** The fs.* entries of the agent's method table (agent/src/server.ts). */
export function fileHandlers(files: FileService): FileHandlers {
  return {
    'fs.open': async (p) => ({ result: await files.openFile(p) }),
    'fs.read': async (p) => ({ result: await files.read(p) }),
    'fs.write': async (p) => ({ result: await files.write(p) }),
    'fs.close': async (p) => ({ result: await files.close(p) }),
    'fs.stat': async (p) => ({ result: await files.stat(p) }),
    'fs.fstat': async (p) => ({ result: await files.fstat(p) }),
    'fs.access': async (p) => ({ result: await files.access(p) }),
    'fs.readlink': async (p) => ({ result: await files.readlink(p) }),
    'fs.readdir': async (p) => ({ result: await files.readdir(p) }),
    'fs.mkdir': async (p) => ({ result: await files.mkdir(p) }),
    'fs.unlink': async (p) => ({ result: await files.unlink(p) }),
    'fs.rename': async (p) => ({ result: await files.rename(p) }),
    'fs.mounts': async () => ({ result: await files.mounts() }),
  };
}
