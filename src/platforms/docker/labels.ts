import os from 'node:os';

/** Every container a session makes carries these; the reaper and the tests find them by label. */
export const LABEL_AGENT = 'dev.mirrord.agent';
export const LABEL_SESSION = 'dev.mirrord.session';
export const LABEL_OWNER = 'dev.mirrord.owner';
export const LABEL_TARGET = 'dev.mirrord.target';

/** What the container is to the session: its agent, guard, sidecar, or the user's own container. */
export type ContainerRole = 'true' | 'guard' | 'sidecar' | 'user';

/** The owner (`host:pid` of this CLI) lets the reaper tell a live session's containers from a dead one's. */
export function sessionLabels(role: ContainerRole, session: string, targetId: string): Record<string, string> {
  return { [LABEL_AGENT]: role, [LABEL_SESSION]: session, [LABEL_OWNER]: `${os.hostname()}:${process.pid}`, [LABEL_TARGET]: targetId };
}
