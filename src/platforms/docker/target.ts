import type Docker from 'dockerode';
import { closest, distance } from 'fastest-levenshtein';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import { dockerUnreachable } from './client.js';

export interface DockerTargetInfo {
  id: string;
  name: string;
  /** The target's main process as the host sees it (for messages and future namespace work). */
  pid: number;
  env: string[];
  mounts: Docker.ContainerInspectInfo['Mounts'];
}

/** Finds a running container by name or ID, with the closest names when it does not exist. */
export async function findContainer(docker: Docker, nameOrId: string): Promise<DockerTargetInfo> {
  let info: Docker.ContainerInspectInfo;
  try {
    info = await docker.getContainer(nameOrId).inspect();
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status !== 404) throw dockerUnreachable(err);
    throw new MirrordError(`no Docker container named "${nameOrId}"`, ExitCode.Target, await suggestion(docker, nameOrId));
  }
  const name = info.Name.replace(/^\//, '');
  if (!info.State.Running || info.State.Paused || info.State.Restarting) {
    const state = info.State.Paused ? 'paused' : info.State.Restarting ? 'restarting' : info.State.Status;
    throw new MirrordError(
      `container "${name}" is not running (${state})`,
      ExitCode.Target,
      `Start it first (docker start ${name}) or pick a running container (docker ps)`,
    );
  }
  return { id: info.Id, name, pid: info.State.Pid, env: info.Config.Env ?? [], mounts: info.Mounts };
}

async function suggestion(docker: Docker, wanted: string): Promise<string> {
  let names: string[] = [];
  try {
    const running = await docker.listContainers();
    names = running.flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')));
  } catch {
    // Listing is only for the hint; the not-found error stands on its own.
  }
  if (names.length === 0) return 'No container is running on this engine (docker ps)';
  const best = closest(wanted, names);
  if (distance(wanted, best) <= Math.max(2, Math.floor(wanted.length / 3))) return `Did you mean docker/${best}?`;
  return `Running containers: ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''}`;
}
