import type Docker from 'dockerode';
import type { Logger } from '../../../common/log.js';
import type { ResolvedTarget } from '../../platforms/platform.js';

/**
 * feature.hostname in container mode: the host name the local container runs under. It is set on
 * the sidecar, whose UTS namespace the container shares with its network namespace (the engine
 * refuses --hostname beside --network container:). A Docker target's own host name (a copy's when
 * copy_target made one); a Kubernetes pod's is its name, as the kubelet sets it.
 */
export async function targetHostname(docker: Docker, target: ResolvedTarget, log: Logger): Promise<string | undefined> {
  if (target.spec.kind === 'targetless') return undefined;
  if (target.spec.kind === 'docker') {
    try {
      return (await docker.getContainer(target.id).inspect()).Config.Hostname || undefined;
    } catch (err) {
      log.debug(`host name of ${target.display}: ${(err as Error).message}`);
      return undefined;
    }
  }
  return /\bpod\/([a-z0-9][a-z0-9.-]*)/.exec(target.display)?.[1]?.slice(0, 63);
}
