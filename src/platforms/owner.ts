/**
 * Which CLI process owns an agent: objects carry `[user@]host:pid`, and a later session on the same
 * host removes those whose owner no longer runs (the reapers of both platforms).
 */
import os from 'node:os';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True only for an owner on this host whose process is gone; other hosts' owners are never judged. */
export function ownerGone(tag: string | undefined): boolean {
  const m = /(?:^|@)([^@:]+):(\d+)$/.exec(tag ?? '');
  if (!m || m[1] !== os.hostname()) return false;
  return !isAlive(Number(m[2]));
}
