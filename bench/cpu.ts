/**
 * CPU seconds of a benchmark run, across every process that carries its bytes: this process's
 * waited children (the client, or the CLI with its intproxy and the client), the engine (dockerd),
 * and containers by id (the sink; each agent, sampled while it lives since it removes itself).
 * Other users of the machine do not count, except through dockerd.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

/** utime+stime and cutime+cstime of a /proc/PID/stat, in seconds. */
function procTimes(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of stat(5), counted from the state (field 3) here.
  return { own: (Number(f[11]) + Number(f[12])) / TICK, children: (Number(f[13]) + Number(f[14])) / TICK };
}

export function waitedChildrenCpu(): number {
  return procTimes('self').children;
}

let dockerdPid: number | undefined | null = null;
export function dockerdCpu(): number {
  if (dockerdPid === null) {
    try {
      dockerdPid = Number(execFileSync('pidof', ['dockerd'], { encoding: 'utf8' }).trim().split(' ')[0]) || undefined;
    } catch {
      dockerdPid = undefined;
    }
  }
  if (!dockerdPid) return 0;
  try {
    return procTimes(dockerdPid).own;
  } catch {
    return 0;
  }
}

/** A container's CPU seconds (cgroup v1 cpuacct or v2 cpu.stat), undefined when not found. */
export function containerCpu(id: string): number | undefined {
  const v1 = `/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`;
  if (existsSync(v1)) return Number(readFileSync(v1, 'utf8')) / 1e9;
  for (const dir of [`/sys/fs/cgroup/system.slice/docker-${id}.scope`, `/sys/fs/cgroup/docker/${id}`]) {
    const f = `${dir}/cpu.stat`;
    if (!existsSync(f)) continue;
    const m = /^usage_usec (\d+)$/m.exec(readFileSync(f, 'utf8'));
    if (m) return Number(m[1]) / 1e6;
  }
  return undefined;
}

/** The cgroup directories of running containers, by id (cgroup v1 or v2). */
function containerIds(): string[] {
  for (const dir of ['/sys/fs/cgroup/cpuacct/docker', '/sys/fs/cgroup/docker']) {
    if (existsSync(dir)) return readdirSync(dir).filter((n) => /^[0-9a-f]{64}$/.test(n));
  }
  if (existsSync('/sys/fs/cgroup/system.slice')) {
    return readdirSync('/sys/fs/cgroup/system.slice').flatMap((n) => /^docker-([0-9a-f]{64})\.scope$/.exec(n)?.[1] ?? []);
  }
  return [];
}

/** The container's name from the engine's own state on disk: asking dockerd would cost CPU we count. */
function containerName(id: string): string {
  try {
    return (JSON.parse(readFileSync(`/var/lib/docker/containers/${id}/config.v2.json`, 'utf8')) as { Name?: string }).Name ?? '';
  } catch {
    return '';
  }
}

/** Samples every mirrord agent container while it lives; stop() gives the sum of their last readings. */
export function watchAgents(everyMs = 50): { stop(): number } {
  const last = new Map<string, number>();
  const names = new Map<string, string>();
  const sample = () => {
    for (const id of containerIds()) {
      if (!names.has(id)) names.set(id, containerName(id));
      if (!names.get(id)!.startsWith('/mirrord-agent-')) continue;
      const cpu = containerCpu(id);
      if (cpu !== undefined) last.set(id, Math.max(last.get(id) ?? 0, cpu));
    }
  };
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return [...last.values()].reduce((a, b) => a + b, 0);
    },
  };
}
