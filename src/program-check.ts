import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { findProgram } from './program-path.js';

/**
 * Programs LD_PRELOAD cannot reach, found before they run so the user is told instead of getting a
 * silently local session: statically linked executables (no PT_INTERP: the dynamic loader never
 * runs) and set-user/group-ID ones (the loader ignores LD_PRELOAD in secure mode).
 */
export interface ProgramCheck {
  static: boolean;
  setid: boolean;
  /** The program that actually runs when `path` is a `#!` script. */
  resolved: string;
}

const PT_INTERP = 3;

function readHead(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** True when an ELF file has no program interpreter; undefined when it is not ELF. */
export function isStaticElf(path: string): boolean | undefined {
  const head = readHead(path, 64 * 1024);
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const is64 = head[4] === 2;
  const le = head[5] === 1;
  const u16 = (o: number) => (le ? head.readUInt16LE(o) : head.readUInt16BE(o));
  const u32 = (o: number) => (le ? head.readUInt32LE(o) : head.readUInt32BE(o));
  const phoff = is64 ? Number(le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32)) : u32(28);
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > head.length) return undefined; // headers beyond what we read: do not guess
    if (u32(at) === PT_INTERP) return false;
  }
  return true;
}

export function checkProgram(path: string, pathVar = process.env.PATH ?? ''): ProgramCheck {
  let resolved = path;
  const head = readHead(path, 256);
  if (head.subarray(0, 2).toString() === '#!') {
    const [interp, arg] = head.toString('utf8').slice(2).split('\n')[0]!.trim().split(/\s+/);
    if (interp) {
      resolved = interp.endsWith('/env') && arg ? (safeFind(arg, pathVar) ?? interp) : interp;
    }
  }
  let st;
  let isStatic: boolean;
  try {
    st = statSync(resolved);
    isStatic = isStaticElf(resolved) === true;
  } catch {
    return { static: false, setid: false, resolved };
  }
  const uid = process.getuid?.() ?? 0;
  // Root running a set-UID-root program is not in secure mode: LD_PRELOAD still applies.
  const setid = ((st.mode & 0o4000) !== 0 && st.uid !== uid) || ((st.mode & 0o2000) !== 0 && st.gid !== (process.getgid?.() ?? 0));
  return { static: isStatic, setid, resolved };
}

function safeFind(cmd: string, pathVar: string): string | undefined {
  try {
    return findProgram(cmd, pathVar);
  } catch {
    return undefined;
  }
}
