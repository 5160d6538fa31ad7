/**
 * Which paths the program's file operations take from the target. The one decision function
 * (`FsRules.decide`) runs in the intproxy; `layerHints` derives from the same rules the prefixes
 * the layer may answer "local" for without asking (so a program's own runtime costs no round trip).
 *
 * Decision order, first match wins (paths are absolute and lexically normalised):
 *  1. mode `local`                                   -> local (nothing is remote)
 *  2. `not_found` regex                              -> ENOENT
 *  3. `local` regex                                  -> local
 *  4. `read_write` regex                             -> remote, reads and writes
 *  5. `read_only` regex                              -> remote for reads; opening for writing is local
 *  6. mode `localwithoverrides`                      -> local (only 2-5 make a path remote)
 *  7. remote defaults: /etc/resolv.conf, /etc/hosts, /etc/hostname, and every mount point of the
 *     target (volumes, bind mounts, tmpfs; and what is below them)          -> remote (as 9)
 *  8. local defaults: the runtime (/proc, /sys, /dev, /usr, /lib*, /bin, /sbin, /etc, /tmp, /var/tmp,
 *     /run, /nix, /snap), the program's working directory and home, the directory of its
 *     executable (and each parent of these three, itself only: /home for /home/dev), anything inside `node_modules`, `site-packages`, `__pycache__`, and shared
 *     libraries (`*.so`, `*.so.N`)                                           -> local
 *  9. everything else                                -> remote: mode `write` reads and writes;
 *     mode `read` reads remotely and opens for writing (and mkdir/unlink/rename) locally.
 * Regexes are JavaScript regexes, matched anywhere in the path unless anchored (`^/app/`).
 *
 * Before all of this, `mapping` (mirrord's `feature.fs.mapping`) may replace the path: the first
 * regex that matches (case-insensitive) rewrites it with Regex::replace semantics (first match only;
 * `$1`, `${name}`, `$name` in the replacement), and the rules above decide on the new path, which is
 * also the one the agent opens.
 */

import { jsRegexSource } from '../config/shapes.js';

export type FsMode = 'read' | 'write' | 'local' | 'localwithoverrides';

export interface FsSettings {
  mode: FsMode;
  read_write?: string[];
  read_only?: string[];
  local?: string[];
  not_found?: string[];
  mapping?: Record<string, string>;
}

export interface FsContext {
  /** Mount points of the target (absolute paths inside it). */
  mounts?: string[];
  /** The program's working directory, home and executable (local by default). */
  cwd?: string;
  home?: string;
  exe?: string;
}

/** `remote-rw`: reads and writes go to the target; `remote-ro`: reads do, writes stay local. */
export type FsDecision = { kind: 'local'; why: string } | { kind: 'not_found'; why: string } | { kind: 'remote-rw' | 'remote-ro'; why: string };

/** What an operation wants: reading (open O_RDONLY, stat, readdir...) or changing the file system. */
export type FsAccess = 'read' | 'write';

export const REMOTE_DEFAULT_FILES = ['/etc/resolv.conf', '/etc/hosts', '/etc/hostname'];
export const LOCAL_DEFAULT_DIRS = [
  '/proc',
  '/sys',
  '/dev',
  '/usr',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/bin',
  '/sbin',
  '/etc',
  '/tmp',
  '/var/tmp',
  '/run',
  '/nix',
  '/snap',
];
const LOCAL_DEFAULT_PATTERNS = [/\/node_modules(\/|$)/, /\/site-packages(\/|$)/, /\/__pycache__(\/|$)/, /\.so(\.\d+)*$/];

/** `/a//b/./c/../d` -> `/a/b/d` (lexical; `..` at the root stays at the root). */
export function normalizePath(p: string): string {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return `/${out.join('/')}`;
}

/** True when `p` is `dir` or below it (component-wise). */
export function under(p: string, dir: string): boolean {
  if (dir === '/') return true;
  return p === dir || p.startsWith(`${dir}/`);
}

function compile(list: string[] | undefined, key: string, flags = ''): RegExp[] {
  return (list ?? []).map((src) => {
    try {
      return new RegExp(jsRegexSource(src), flags);
    } catch (err) {
      throw new Error(`feature.fs.${key}: invalid regex ${JSON.stringify(src)}: ${(err as Error).message}`, { cause: err });
    }
  });
}

/** A replacement in Rust's regex syntax (`$1`, `${1}`, `$name`, `${name}`, `$$`) in JavaScript's. */
export function jsReplacement(rep: string): string {
  return rep.replace(/\$(\$|\{([^}]*)\}|([A-Za-z0-9_]+))/g, (_m, _all: string, braced: string | undefined, bare: string | undefined) => {
    const name = braced ?? bare;
    if (name === undefined) return '$$';
    return /^\d+$/.test(name) ? `$${name}` : `$<${name}>`;
  });
}

/**
 * The literal text every match of `re` starts with when it is anchored at the start (`^/app/x` ->
 * `/app/x`), or undefined when it may match anywhere (then the layer must ask about every path).
 */
export function anchoredPrefix(src: string): string | undefined {
  if (!src.startsWith('^')) return undefined;
  let out = '';
  for (let i = 1; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      const n = src[i + 1];
      if (n !== undefined && /[/.\-_^$*+?()[\]{}|\\]/.test(n)) {
        out += n;
        i++;
        continue;
      }
      break;
    }
    if ('.*+?()[]{}|^$'.includes(c)) {
      // A quantifier applies to the character before it, which is then optional.
      if ('*?{'.includes(c)) out = out.slice(0, -1);
      break;
    }
    out += c;
  }
  return out;
}

export class FsRules {
  readonly mode: FsMode;
  private readonly readWrite: RegExp[];
  private readonly readOnly: RegExp[];
  private readonly local: RegExp[];
  private readonly notFound: RegExp[];
  private readonly mapping: { re: RegExp; to: string }[];
  private readonly remoteExact: string[];
  private readonly remoteDirs: string[];
  private readonly localDirs: string[];
  /** Ancestors of the program's own directories (/home for /home/dev): local themselves only. */
  private readonly localExact: string[];

  constructor(
    private readonly settings: FsSettings,
    private readonly ctx: FsContext = {},
  ) {
    this.mode = settings.mode;
    this.readWrite = compile(settings.read_write, 'read_write');
    this.readOnly = compile(settings.read_only, 'read_only');
    this.local = compile(settings.local, 'local');
    this.notFound = compile(settings.not_found, 'not_found');
    const sources = Object.keys(settings.mapping ?? {});
    this.mapping = compile(sources, 'mapping', 'i').map((re, i) => ({ re, to: jsReplacement(settings.mapping![sources[i]!]!) }));
    this.remoteExact = REMOTE_DEFAULT_FILES;
    // `/` itself is never a mount point that makes everything remote (the root file system).
    this.remoteDirs = (ctx.mounts ?? []).map(normalizePath).filter((m) => m !== '/' && !LOCAL_RUNTIME_MOUNT(m));
    const own = [ctx.cwd, ctx.home, ctx.exe ? parentDir(ctx.exe) : undefined]
      .filter((d): d is string => !!d && d.startsWith('/'))
      .map(normalizePath)
      .filter((d) => d !== '/');
    this.localDirs = [...LOCAL_DEFAULT_DIRS, ...own];
    this.localExact = [...new Set(own.flatMap(ancestors))].filter((a) => !this.localDirs.some((d) => under(a, d)));
  }

  /** feature.fs.mapping applied to an absolute path (relative ones are left alone, as in mirrord). */
  mapPath(p: string): string {
    if (!p.startsWith('/')) return p;
    const hit = this.mapping.find((m) => m.re.test(p));
    return hit ? p.replace(hit.re, hit.to) : p;
  }

  decide(rawPath: string, access: FsAccess): FsDecision {
    const path = normalizePath(rawPath);
    if (this.mode === 'local') return { kind: 'local', why: 'mode local' };
    if (this.notFound.some((r) => r.test(path))) return { kind: 'not_found', why: 'not_found rule' };
    if (this.local.some((r) => r.test(path))) return { kind: 'local', why: 'local rule' };
    if (this.readWrite.some((r) => r.test(path))) return { kind: 'remote-rw', why: 'read_write rule' };
    if (this.readOnly.some((r) => r.test(path))) {
      return access === 'write' ? { kind: 'local', why: 'read_only rule, opened for writing' } : { kind: 'remote-ro', why: 'read_only rule' };
    }
    if (this.mode === 'localwithoverrides') return { kind: 'local', why: 'mode localwithoverrides' };
    const byMode = (why: string): FsDecision =>
      this.mode === 'write'
        ? { kind: 'remote-rw', why }
        : access === 'write'
          ? { kind: 'local', why: `${why}, written locally in read mode` }
          : { kind: 'remote-ro', why };
    if (this.remoteExact.includes(path)) return byMode('remote default');
    if (this.remoteDirs.some((m) => under(path, m))) return byMode('mount point of the target');
    if (this.localDirs.some((d) => under(path, d))) return { kind: 'local', why: 'local default' };
    if (this.localExact.includes(path)) return { kind: 'local', why: 'local default (a parent of a local directory)' };
    if (LOCAL_DEFAULT_PATTERNS.some((r) => r.test(path))) return { kind: 'local', why: 'local default (runtime files)' };
    return byMode('remote');
  }

  /**
   * For the layer: `local` directories it may answer without asking, and `ask` string prefixes that
   * override them. Sound: every path under a `local` entry that does not start with an `ask` entry
   * is decided `local` by `decide()` for every access. Returns `off` when nothing is ever remote.
   */
  layerHints(): { off: boolean; local: string[]; ask: string[] } {
    if (this.mode === 'local') return { off: true, local: [], ask: [] };
    const ask = [...this.remoteExact, ...this.remoteDirs];
    let anywhere = false;
    // A mapped path must reach the intproxy even where the layer would answer "local" itself.
    const mapped = Object.keys(this.settings.mapping ?? {});
    for (const src of [...(this.settings.not_found ?? []), ...(this.settings.read_write ?? []), ...(this.settings.read_only ?? []), ...mapped]) {
      const prefix = anchoredPrefix(src);
      if (prefix === undefined || prefix === '') anywhere = true;
      else ask.push(prefix);
    }
    if (anywhere) return { off: false, local: [], ask: [] };
    if (this.mode === 'localwithoverrides') {
      // Only rule matches are remote: everything outside the ask prefixes is local.
      return { off: false, local: ['/'], ask: ask.filter((a) => !this.remoteExact.includes(a) && !this.remoteDirs.includes(a)) };
    }
    // `=PATH` entries are exact paths (not what is below them).
    const local = [...this.localDirs, ...this.localExact.map((a) => `=${a}`)];
    return { off: false, local: local.filter((d) => !d.includes(':')), ask: ask.filter((a) => !a.includes(':')) };
  }
}

/** `/a/b/c` -> [`/a`, `/a/b`] (not `/`, not the path itself). */
function ancestors(p: string): string[] {
  const parts = p.split('/').filter(Boolean);
  return parts.slice(0, -1).map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
}

function parentDir(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

/** Mounts every container has (the runtime's own) are not "volumes of the target". */
function LOCAL_RUNTIME_MOUNT(m: string): boolean {
  return ['/proc', '/sys', '/dev'].some((d) => under(m, d));
}

/** The environment variables that carry the hints to the layer (see layer/src/files.c). */
export function layerHintEnv(rules: FsRules): Record<string, string> {
  const h = rules.layerHints();
  return {
    MIRRORD_FS: h.off ? 'off' : 'on',
    MIRRORD_FS_LOCAL: h.local.join(':'),
    MIRRORD_FS_ASK: h.ask.join(':'),
  };
}
