import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parse as parseDotenv } from 'dotenv';

/**
 * `container.cli_extra_args`: extra `docker run` arguments of the sidecar container. mirrord adds
 * them to the `docker run` of its sidecar; ours is created through the engine's API, so the flags
 * that make sense for a sidecar are read (node's own `util.parseArgs`) into the fields of the
 * create call, and any other flag is refused with one line naming it.
 */

/** What the flags add to the sidecar's create options (dockerode's HostConfig names). */
export interface SidecarExtra {
  labels: Record<string, string>;
  env: string[];
  /** -p: published on the sidecar, which owns the network namespace (as the user's own -p). */
  publish: string[];
  /** --network: the sidecar's network, when the user's docker run names none. */
  network?: string;
  host: SidecarHostConfig;
}

export interface SidecarHostConfig {
  Binds?: string[];
  CapAdd?: string[];
  CapDrop?: string[];
  Dns?: string[];
  DnsSearch?: string[];
  DnsOptions?: string[];
  ExtraHosts?: string[];
  SecurityOpt?: string[];
  Ulimits?: Array<{ Name: string; Soft: number; Hard: number }>;
  Memory?: number;
  MemoryReservation?: number;
  MemorySwap?: number;
  NanoCpus?: number;
  CpuShares?: number;
  CpusetCpus?: string;
  PidsLimit?: number;
  ShmSize?: number;
  Sysctls?: Record<string, string>;
  Tmpfs?: Record<string, string>;
  Privileged?: boolean;
  Init?: boolean;
}

const list = { type: 'string', multiple: true } as const;
const one = { type: 'string' } as const;
const OPTIONS = {
  label: { ...list, short: 'l' },
  env: { ...list, short: 'e' },
  'env-file': list,
  publish: { ...list, short: 'p' },
  network: one,
  net: one,
  volume: { ...list, short: 'v' },
  'cap-add': list,
  'cap-drop': list,
  dns: list,
  'dns-search': list,
  'dns-option': list,
  'dns-opt': list,
  'add-host': list,
  'security-opt': list,
  ulimit: list,
  memory: { ...one, short: 'm' },
  'memory-reservation': one,
  'memory-swap': one,
  cpus: one,
  'cpu-shares': { ...one, short: 'c' },
  'cpuset-cpus': one,
  'pids-limit': one,
  'shm-size': one,
  sysctl: list,
  tmpfs: list,
  privileged: { type: 'boolean' },
  init: { type: 'boolean' },
  rm: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

/** The sidecar flags, as the error for any other one lists them. */
export const SIDECAR_FLAGS =
  '-l/--label, -e/--env, --env-file, -p/--publish, --network, -v/--volume, --cap-add, --cap-drop, --dns, --dns-search, --dns-option, --add-host, --security-opt, --ulimit, -m/--memory, --memory-reservation, --memory-swap, --cpus, -c/--cpu-shares, --cpuset-cpus, --pids-limit, --shm-size, --sysctl, --tmpfs, --privileged, --init, --rm';

/** Why a docker run flag of the sidecar is not taken, for the flags a mirrord user may well write. */
const WHY_NOT: Record<string, string> = {
  '--name': 'the sidecar is named after the session (mirrord-sidecar-ID)',
  '-d': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '--detach': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '-i': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '--interactive': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '-t': 'a terminal would garble the link to the agent on its stdin and stdout',
  '--tty': 'a terminal would garble the link to the agent on its stdin and stdout',
  '-a': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '--attach': 'the sidecar always runs attached: its stdin and stdout are the link to the agent',
  '--log-driver': 'the sidecar has no log driver: its stdout is the link to the agent, which a driver would copy',
  '--log-opt': 'the sidecar has no log driver: its stdout is the link to the agent, which a driver would copy',
  '--entrypoint': "the sidecar's program is mirrord's own",
  '-u': "the sidecar's program is mirrord's own and runs as root (it sets up the namespace)",
  '--user': "the sidecar's program is mirrord's own and runs as root (it sets up the namespace)",
  '-w': "the sidecar's working directory is the program's (from the user's docker run)",
  '--workdir': "the sidecar's working directory is the program's (from the user's docker run)",
  '-h': "the host name is feature.hostname (the target's), or the user's docker run",
  '--hostname': "the host name is feature.hostname (the target's), or the user's docker run",
  '--platform': "the sidecar runs the engine's own platform; container.platform is the local container's",
  '--restart': 'the sidecar lives exactly as long as the session',
  '--network-alias': 'aliases of the sidecar are not supported: name the network in the docker run of the container',
  '--mount': 'use -v/--volume',
  '--pid': "the sidecar shares nothing but its network namespace with the user's container",
  '--ipc': "the sidecar shares nothing but its network namespace with the user's container",
  '--userns': "the sidecar shares nothing but its network namespace with the user's container",
};

export class SidecarArgsError extends Error {}

/** Reads cli_extra_args into what the sidecar's create call takes; throws SidecarArgsError naming the flag. */
export function parseSidecarArgs(args: string[], readFile: (file: string) => string = (f) => readFileSync(f, 'utf8')): SidecarExtra {
  let values: Record<string, string | boolean | string[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true }));
  } catch (err) {
    const e = err as Error & { code?: string };
    const flag = /option '([^',]+)/i.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) {
      const name = flag.replace(/=.*$/, '');
      throw new SidecarArgsError(`docker run ${name} is not taken for the sidecar: ${WHY_NOT[name] ?? `the sidecar takes ${SIDECAR_FLAGS}`}`);
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) throw new SidecarArgsError(`docker run ${flag} needs a value`);
    throw new SidecarArgsError(e.message);
  }
  if (positionals.length) {
    throw new SidecarArgsError(`"${positionals[0]}" is not a flag: cli_extra_args holds docker run flags only (the sidecar's image and command are mirrord's)`);
  }
  const strs = (k: string) => (values[k] as string[] | undefined) ?? [];
  const str = (k: string) => values[k] as string | undefined;
  const extra: SidecarExtra = { labels: {}, env: [], publish: strs('publish'), host: {} };
  for (const l of strs('label')) {
    const eq = l.indexOf('=');
    extra.labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  for (const file of strs('env-file')) {
    let text: string;
    try {
      text = readFile(file);
    } catch (err) {
      throw new SidecarArgsError(`docker run --env-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    for (const [k, v] of Object.entries(parseDotenv(text))) extra.env.push(`${k}=${v}`);
  }
  for (const e of strs('env')) {
    // docker run -e NAME (no value) passes this process's value, or nothing when unset.
    if (e.includes('=')) extra.env.push(e);
    else if (process.env[e] !== undefined) extra.env.push(`${e}=${process.env[e]}`);
  }
  const network = str('network') ?? str('net');
  if (network !== undefined) {
    if (network === 'host' || network === 'none' || network.startsWith('container:')) {
      throw new SidecarArgsError(`docker run --network ${network} is not taken for the sidecar: it owns the network namespace the container joins`);
    }
    extra.network = network;
  }
  const h = extra.host;
  const set = <K extends keyof SidecarHostConfig>(k: K, v: SidecarHostConfig[K] | undefined) => {
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) h[k] = v;
  };
  set('Binds', strs('volume'));
  set('CapAdd', strs('cap-add'));
  set('CapDrop', strs('cap-drop'));
  set('Dns', strs('dns'));
  set('DnsSearch', strs('dns-search'));
  set('DnsOptions', [...strs('dns-option'), ...strs('dns-opt')]);
  set(
    'ExtraHosts',
    strs('add-host').map((a) => {
      // docker accepts host:ip and host=ip; the API takes host:ip.
      const m = /^([^:=]+)[:=](.+)$/.exec(a);
      if (!m) throw new SidecarArgsError(`docker run --add-host ${a}: expected HOST:IP`);
      return `${m[1]}:${m[2]}`;
    }),
  );
  set('SecurityOpt', strs('security-opt'));
  set('Ulimits', strs('ulimit').map(ulimit));
  set('Memory', bytesOf('--memory', str('memory')));
  set('MemoryReservation', bytesOf('--memory-reservation', str('memory-reservation')));
  const swap = str('memory-swap');
  set('MemorySwap', swap === '-1' ? -1 : bytesOf('--memory-swap', swap));
  const cpus = str('cpus');
  if (cpus !== undefined) {
    const n = Number(cpus);
    if (!(n > 0)) throw new SidecarArgsError(`docker run --cpus ${cpus}: expected a positive number`);
    h.NanoCpus = Math.round(n * 1e9);
  }
  set('CpuShares', intOf('--cpu-shares', str('cpu-shares')));
  set('CpusetCpus', str('cpuset-cpus'));
  set('PidsLimit', intOf('--pids-limit', str('pids-limit')));
  set('ShmSize', bytesOf('--shm-size', str('shm-size')));
  if (strs('sysctl').length) h.Sysctls = Object.fromEntries(strs('sysctl').map((s) => pair('--sysctl', s, '=')));
  if (strs('tmpfs').length) h.Tmpfs = Object.fromEntries(strs('tmpfs').map((t) => (t.includes(':') ? pair('--tmpfs', t, ':') : [t, ''])));
  if (values.privileged) h.Privileged = true;
  if (values.init) h.Init = true;
  return extra;
}

function pair(flag: string, v: string, sep: string): [string, string] {
  const i = v.indexOf(sep);
  if (i <= 0) throw new SidecarArgsError(`docker run ${flag} ${v}: expected NAME${sep}VALUE`);
  return [v.slice(0, i), v.slice(i + 1)];
}

function intOf(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new SidecarArgsError(`docker run ${flag} ${v}: expected an integer`);
  return Number(v);
}

/** docker's sizes: a number with an optional unit b, k, m, g, t (powers of 1024), as `512m` or `1.5g`. */
function bytesOf(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$/i.exec(v.trim());
  if (!m) throw new SidecarArgsError(`docker run ${flag} ${v}: expected a size like 512m or 1g`);
  const power = m[2] ? 'kmgtp'.indexOf(m[2].toLowerCase()) + 1 : 0;
  return Math.floor(Number(m[1]) * 1024 ** power);
}

/** --ulimit NAME=SOFT[:HARD]. */
function ulimit(v: string): { Name: string; Soft: number; Hard: number } {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
  if (!m) throw new SidecarArgsError(`docker run --ulimit ${v}: expected NAME=SOFT[:HARD]`);
  const soft = Number(m[2]);
  return { Name: m[1]!, Soft: soft, Hard: m[3] !== undefined ? Number(m[3]) : soft };
}
