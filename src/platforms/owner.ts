/**
 * Which CLI process owns an agent: objects carry `[user@]host:pid`, and a later session on the same
 * host removes those whose owner no longer runs (the reapers of both platforms).
 */
import os from 'node:os';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of an owner on this host; undefined for another host's (or a malformed tag). */
export function ownerPidHere(tag: string | undefined): number | undefined {
  const m = /(?:^|@)([^@:]+):(\d+)$/.exec(tag ?? '');
  return m && m[1] === os.hostname() ? Number(m[2]) : undefined;
}

/** True only for an owner on this host whose process is gone; other hosts' owners are never judged. */
export function ownerGone(tag: string | undefined): boolean {
  const pid = ownerPidHere(tag);
  return pid !== undefined && !isAlive(pid);
}
