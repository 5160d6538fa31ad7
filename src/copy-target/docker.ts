import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { dockerUnreachable } from '../platforms/docker/client.js';
import { LABEL_AGENT, LABEL_OWNER, LABEL_SESSION, LABEL_TARGET } from '../platforms/docker/labels.js';
import os from 'node:os';

/**
 * feature.copy_target on Docker: a second container made from the target's own settings (image,
 * command, env, user, working directory, mounts, networks with their aliases), which the session
 * then targets. The original keeps running untouched; the copy is removed at the end.
 */

/** Marks the copy: its role for the reaper (a dead owner's copy is removed) and what it copies. */
export const LABEL_COPY_OF = 'dev.mirrord.copy-of';
/** Compose's labels would make `docker compose ps/down` take the copy for one of the project's containers. */
const FOREIGN_LABELS = /^com\.docker\.compose\./;

export interface DockerCopy {
  id: string;
  name: string;
  remove(): Promise<void>;
}

/** The create body of the copy: pure, so that what is copied (and what is not) is unit-tested. */
export function copyContainerBody(info: Docker.ContainerInspectInfo, session: string): Docker.ContainerCreateOptions {
  const original = info.Name.replace(/^\//, '');
  const shortId = info.Id.slice(0, 12);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(info.Config.Labels ?? {})) if (!FOREIGN_LABELS.test(k)) labels[k] = v;
  Object.assign(labels, {
    [LABEL_AGENT]: 'copy',
    [LABEL_SESSION]: session,
    [LABEL_OWNER]: `${os.hostname()}:${process.pid}`,
    [LABEL_TARGET]: info.Id,
    [LABEL_COPY_OF]: original,
  });
  const hc = info.HostConfig;
  const mounts: Docker.MountSettings[] = [];
  for (const m of info.Mounts) {
    const readOnly = !m.RW;
    if (m.Type === 'bind') mounts.push({ Type: 'bind', Source: m.Source, Target: m.Destination, ReadOnly: readOnly });
    else if (m.Type === 'volume' && m.Name) mounts.push({ Type: 'volume', Source: m.Name, Target: m.Destination, ReadOnly: readOnly });
    else if (m.Type === 'tmpfs') mounts.push({ Type: 'tmpfs', Source: '', Target: m.Destination });
  }
  const networks = Object.entries(info.NetworkSettings.Networks ?? {});
  const [first] = networks;
  const netMode = hc.NetworkMode ?? 'default';
  const joinsOther = netMode.startsWith('container:');
  // The engine names a container by its short ID on each network (and by its name): those are the
  // original's, the copy gets its own.
  const aliases = (a: string[] | null | undefined) => (a ?? []).filter((x) => x !== shortId && x !== original);
  return {
    name: `${original}-mirrord-copy-${session}`.slice(0, 200),
    Image: info.Image,
    Cmd: info.Config.Cmd ?? undefined,
    Entrypoint: info.Config.Entrypoint ?? undefined,
    Env: info.Config.Env ?? [],
    User: info.Config.User || undefined,
    WorkingDir: info.Config.WorkingDir || undefined,
    Labels: labels,
    ExposedPorts: info.Config.ExposedPorts,
    Tty: info.Config.Tty,
    OpenStdin: info.Config.OpenStdin,
    StopSignal: (info.Config as { StopSignal?: string }).StopSignal,
    // A host name the user set is copied; the engine's default (the short ID) is the copy's own.
    Hostname: info.Config.Hostname && info.Config.Hostname !== shortId && !joinsOther ? info.Config.Hostname : undefined,
    Domainname: info.Config.Domainname || undefined,
    HostConfig: {
      Mounts: mounts,
      NetworkMode: netMode,
      CapAdd: hc.CapAdd ?? undefined,
      CapDrop: hc.CapDrop ?? undefined,
      Privileged: hc.Privileged,
      SecurityOpt: hc.SecurityOpt ?? undefined,
      Init: hc.Init ?? undefined,
      Dns: hc.Dns ?? undefined,
      DnsSearch: hc.DnsSearch ?? undefined,
      DnsOptions: hc.DnsOptions ?? undefined,
      ExtraHosts: hc.ExtraHosts ?? undefined,
      Sysctls: hc.Sysctls ?? undefined,
      Ulimits: hc.Ulimits ?? undefined,
      Devices: hc.Devices ?? undefined,
      GroupAdd: hc.GroupAdd ?? undefined,
      ShmSize: hc.ShmSize || undefined,
      Memory: hc.Memory || undefined,
      NanoCpus: hc.NanoCpus || undefined,
      IpcMode: hc.IpcMode?.startsWith('container:') ? hc.IpcMode : undefined,
      PidMode: hc.PidMode || undefined,
      // Not copied: published ports (the original holds them), a fixed IP (taken), restarts (the
      // copy lives exactly as long as the session).
      RestartPolicy: { Name: 'no' },
    },
    NetworkingConfig:
      first && !joinsOther && !['host', 'none'].includes(netMode) ? { EndpointsConfig: { [first[0]]: { Aliases: aliases(first[1].Aliases) } } } : undefined,
  };
}

/** The networks after the first, with their aliases: the API of older engines takes one network at creation. */
export function extraNetworks(info: Docker.ContainerInspectInfo): Array<{ network: string; aliases: string[] }> {
  const netMode = info.HostConfig.NetworkMode ?? 'default';
  if (netMode.startsWith('container:') || ['host', 'none'].includes(netMode)) return [];
  const original = info.Name.replace(/^\//, '');
  const shortId = info.Id.slice(0, 12);
  return Object.entries(info.NetworkSettings.Networks ?? {})
    .slice(1)
    .map(([network, e]) => ({ network, aliases: ((e.Aliases ?? []) as string[]).filter((x) => x !== shortId && x !== original) }));
}

/** Creates and starts the copy of the running container `targetId`; nothing is left behind when that fails. */
export async function copyDockerContainer(docker: Docker, targetId: string, session: string, log: Logger): Promise<DockerCopy> {
  let info: Docker.ContainerInspectInfo;
  try {
    info = await docker.getContainer(targetId).inspect();
  } catch (err) {
    throw dockerUnreachable(err);
  }
  const body = copyContainerBody(info, session);
  let container: Docker.Container;
  try {
    container = await docker.createContainer(body);
  } catch (err) {
    throw new MirrordError(
      `could not create the copy of container ${body.name!.split('-mirrord-copy-')[0]}: ${(err as Error).message}`,
      ExitCode.Target,
      'Set feature.copy_target to false to target the container itself',
      { cause: err },
    );
  }
  const remove = () => removeCopy(docker, container.id, log);
  try {
    for (const n of extraNetworks(info)) await docker.getNetwork(n.network).connect({ Container: container.id, EndpointConfig: { Aliases: n.aliases } });
    await container.start();
    const state = (await container.inspect()).State;
    if (!state.Running) throw new Error(`it exited at once (code ${state.ExitCode})`);
  } catch (err) {
    await remove();
    throw new MirrordError(
      `the copy of container ${info.Name.replace(/^\//, '')} did not start: ${(err as Error).message}`,
      ExitCode.Target,
      'Set feature.copy_target to false to target the container itself',
      { cause: err },
    );
  }
  log.debug(`copy ${body.name} (${container.id.slice(0, 12)}) of ${info.Id.slice(0, 12)} started`);
  return { id: container.id, name: body.name!, remove };
}

/**
 * Without `v`: the copy shares the original's volumes, anonymous ones included, and removing them
 * with the copy would take the original's data.
 */
export async function removeCopy(docker: Docker, id: string, log: Logger): Promise<void> {
  try {
    await docker.getContainer(id).remove({ force: true });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status !== 404 && status !== 409) log.warn(`could not remove the copy ${id.slice(0, 12)}: ${(err as Error).message}`);
  }
}
