import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, renameSync, statSync, unlinkSync, writeFileSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { packageRoot } from '../package-root.js';

/**
 * The devcontainer session file: what the layer reads (layer/src/session_file.c) when no variable
 * names an intproxy. NUL-separated `NAME=VALUE` entries, since environment values may hold
 * newlines: the magic entry, the layer's settings (what `mirrord exec` puts in the environment),
 * `mirrord.exe` (the CLI, which the layer leaves alone) and `env.NAME` for each variable of the
 * target to apply. Its liveness is a flock the daemon holds for its whole life.
 */
export const SESSION_FILE_MAGIC = 'mirrord-session=1';

export interface SessionFileContent {
  /** MIRRORD_LAYER_ADDR, MIRRORD_SESSION, MIRRORD_FS*, MIRRORD_SKIP_PROCESSES. */
  settings: Record<string, string>;
  /** The executable of the mirrord CLI: never intercepted. */
  cliExe: string;
  /** The target's variables after the env rules (include, exclude, override, env_file). */
  env: Record<string, string>;
}

export function encodeSessionFile(c: SessionFileContent): Buffer {
  const entries = [SESSION_FILE_MAGIC, ...Object.entries(c.settings).map(([k, v]) => `${k}=${v}`), `mirrord.exe=${c.cliExe}`];
  for (const [k, v] of Object.entries(c.env)) {
    // A NUL cannot be in an environment value anyway; a name with '=' cannot be set.
    if (k.includes('=') || k.includes('\0') || v.includes('\0') || !k) continue;
    entries.push(`env.${k}=${v}`);
  }
  return Buffer.from(entries.map((e) => e + '\0').join(''));
}

/** The parsed file, for `status` and the tests. */
export function decodeSessionFile(buf: Buffer): SessionFileContent | undefined {
  const entries = buf.toString('utf8').split('\0');
  if (entries[0] !== SESSION_FILE_MAGIC) return undefined;
  const out: SessionFileContent = { settings: {}, cliExe: '', env: {} };
  for (const e of entries.slice(1)) {
    const eq = e.indexOf('=');
    if (eq <= 0) continue;
    const [k, v] = [e.slice(0, eq), e.slice(eq + 1)];
    if (k.startsWith('env.')) out.env[k.slice(4)] = v;
    else if (k === 'mirrord.exe') out.cliExe = v;
    else out.settings[k] = v;
  }
  return out;
}

/** mirrord-session-lock (layer/helpers/): Node has no flock, so a helper takes it on our descriptor. */
export function lockHelperPath(root: string = packageRoot()): string {
  return path.join(root, 'layer/build/mirrord-session-lock');
}

/** Tries the lock on an open descriptor (`wait`: waits for it); true when it is now held (for as long as `fd` stays open). */
export function takeLock(fd: number, helper: string = lockHelperPath(), wait = false): boolean {
  const r = spawnSync(helper, wait ? ['wait'] : [], { stdio: ['ignore', 'ignore', 'pipe', fd] });
  if (r.error)
    throw new MirrordError(`cannot run ${helper}: ${r.error.message}`, ExitCode.Internal, 'The installation is incomplete: reinstall mirrord', {
      cause: r.error,
    });
  return r.status === 0;
}

export interface HeldSessionFile {
  readonly path: string;
  /** Removes the file (when it is still ours) and lets the lock go. */
  release(): void;
}

/**
 * Writes the file under a temporary name, locks it, then renames it into place: the file at `file`
 * is locked from the moment it exists, so no layer ever reads a live session as stale.
 */
export function writeLockedSessionFile(file: string, content: SessionFileContent, helper?: string): HeldSessionFile {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, encodeSessionFile(content), { mode: 0o644 });
  const fd = openSync(tmp, 'r');
  try {
    if (!takeLock(fd, helper)) throw new MirrordError(`another process holds the lock of ${tmp}`, ExitCode.Internal);
    renameSync(tmp, file);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  const ino = fstatSync(fd).ino;
  let released = false;
  return {
    path: file,
    release() {
      if (released) return;
      released = true;
      try {
        if (existsSync(file) && statSync(file).ino === ino) unlinkSync(file);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** True when a daemon holds the lock of the file at `file` (a live session). */
export function sessionFileLive(file: string, helper?: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    // Taking it ourselves means nobody held it; our descriptor closes right after, releasing it.
    return !takeLock(fd, helper);
  } finally {
    closeSync(fd);
  }
}
