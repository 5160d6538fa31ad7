import type Docker from 'dockerode';
import type { Logger } from '../../../common/log.js';

/**
 * The one way a session's container goes: containers made with AutoRemove normally leave by
 * themselves once their stdin closes, so wait up to `graceMs` for that, then force the removal.
 * Resolves when the container is gone (or the engine said why it cannot be removed).
 */
export async function removeContainer(container: Docker.Container, log: Logger, graceMs = 0): Promise<void> {
  if (graceMs > 0 && (await waitGone(container, graceMs))) return;
  try {
    await container.remove({ force: true, v: true });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    // 404: already gone; 409: AutoRemove is removing it right now.
    if (status !== 404 && status !== 409) log.warn(`could not remove container ${container.id.slice(0, 12)}: ${(err as Error).message}`);
  }
}

/** True once the engine no longer knows the container; false after `timeoutMs`. */
export async function waitGone(container: Docker.Container, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await container.inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
