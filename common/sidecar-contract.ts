/**
 * What the CLI and the container-mode sidecar agree on (sidecar/src/main.ts runs in the sidecar
 * image; src/commands/container.ts drives it): the ready line on the sidecar's stderr, and the
 * socket a `docker exec` reads the target's mounted files from.
 */
export const READY_PREFIX = 'MIRRORD_SIDECAR_READY ';
/** The line the sidecar writes when an internal_proxy idle timeout ended the session, then the reason. */
export const IDLE_PREFIX = 'MIRRORD_SIDECAR_IDLE ';
export const MOUNTS_SOCKET = '/tmp/mirrord-mounts.sock';
/** The layer and mirrord-init, in the sidecar image's /mirrord volume (--volumes-from). */
export const LAYER_IN_SIDECAR = '/mirrord/libmirrord_layer.so';
export const INIT_IN_SIDECAR = '/mirrord/mirrord-init';

export interface SidecarReady {
  layerAddr: string;
  env: Record<string, string>;
  hints: Record<string, string>;
  agentPid?: number;
  /** Loopback port mirrord-init connects to; its closing ends the user's container. */
  lifelinePort: number;
  /** Set when container.capture = namespace: the ports the iptables rules redirect to. */
  capture?: { tcp?: number; dns?: number };
  /** The target's mount points to copy (none: the CLI skips the copy's round trips). */
  mountRoots?: string[];
}
