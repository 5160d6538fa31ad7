/**
 * Job mode: the agent pod shares the node's PID namespace (hostPID) and must find the target
 * container's main process without asking the container runtime (containerd, CRI-O or Docker, each
 * with its own socket and API). Every runtime puts the container ID in the cgroup path of each of
 * its processes, under cgroup v1 and v2 alike, so /proc/PID/cgroup names the container.
 */
import { readdir } from 'node:fs/promises';
import { readProcText } from '../proc.js';

/** `containerd://abc...` (pod status) -> `abc...`. */
export function bareContainerId(id: string): string {
  const i = id.indexOf('://');
  return (i >= 0 ? id.slice(i + 3) : id).trim();
}

/** True when a /proc/PID/cgroup text places the process in the container with this ID. */
export function cgroupNamesContainer(cgroupText: string, id: string): boolean {
  // A path segment ends with the ID (cgroupfs: `/kubepods/.../<id>`; systemd: `cri-containerd-<id>.scope`).
  return cgroupText.split('\n').some((line) => {
    const path = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    return path.split('/').some((seg) => seg === id || seg.endsWith(`-${id}.scope`) || seg.endsWith(`-${id}`));
  });
}

async function ppidOf(procRoot: string, pid: number): Promise<number> {
  const stat = await readProcText(`${procRoot}/${pid}/stat`);
  // Field 4, after the command name in parentheses (which may itself hold spaces or parentheses).
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/**
 * The container's main process: the member of its cgroup whose parent is not (the runtime's shim
 * is the parent of the container's first process). Undefined when no process matches.
 */
export async function findContainerPid(containerId: string, procRoot = '/proc'): Promise<number | undefined> {
  const id = bareContainerId(containerId);
  if (!/^[0-9a-f]{12,128}$/i.test(id)) throw new Error(`not a container ID: ${JSON.stringify(containerId)}`);
  const members = new Set<number>();
  for (const name of await readdir(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (cgroupNamesContainer(await readProcText(`${procRoot}/${name}/cgroup`), id)) members.add(Number(name));
    } catch {
      // The process left while we looked.
    }
  }
  const roots: number[] = [];
  for (const pid of members) {
    try {
      if (!members.has(await ppidOf(procRoot, pid))) roots.push(pid);
    } catch {
      // Gone.
    }
  }
  return roots.sort((a, b) => a - b)[0];
}
