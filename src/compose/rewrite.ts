import { stringify } from 'yaml';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * The rewrite of a normalised compose project (what `docker compose config` prints) for `mirrord
 * up`: each service marked with `x-mirrord` gets a sidecar service that takes over its network
 * namespace (networks, aliases, ports, host name, DNS settings), and the service joins it
 * (`network_mode: service:SIDECAR`), takes the layer and mirrord-init from the sidecar's volume, and
 * runs with the session's env. Pure: everything the sessions decided comes in as arguments, so the
 * rewrite is tested with golden files and no engine.
 */
export type ComposeService = Record<string, unknown>;
export interface ComposeDoc {
  name?: string;
  services: Record<string, ComposeService>;
  [key: string]: unknown;
}

/** Keys of a service that belong to its network namespace: they move to the sidecar, which owns it. */
const NAMESPACE_KEYS = [
  'networks',
  'ports',
  'expose',
  'hostname',
  'domainname',
  'dns',
  'dns_opt',
  'dns_search',
  'extra_hosts',
  'mac_address',
  'links',
  'external_links',
];

export interface SidecarService {
  /** The marked service. */
  service: string;
  /** Its sidecar's service name (sidecarName()). */
  sidecar: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  /** container.capture = namespace: iptables in the shared namespace. */
  netAdmin: boolean;
  /** feature.hostname: the target's host name, for a service that sets none of its own. */
  hostname?: string;
}

export interface SessionService {
  service: string;
  sidecar: string;
  /** The service's program, as its image and the file say (entrypoint + command), run under init. */
  argv: string[];
  /** mirrord-init's path in the sidecar volume and the lifeline port it connects to. */
  init: { path: string; lifelinePort: number };
  /** The target's env (filtered as the service's env settings say): below what the file declares. */
  remoteEnv: Record<string, string>;
  /** env.override: above what the file declares. */
  overrideEnv: Record<string, string>;
  /** The layer's variables, LD_PRELOAD included: above everything. */
  layerEnv: Record<string, string>;
}

/** A sidecar service name that no service of the project has. */
export function sidecarName(doc: ComposeDoc, service: string): string {
  let name = `mirrord-${service}`;
  for (let i = 2; doc.services[name]; i++) name = `mirrord-${service}-${i}`;
  return name;
}

/**
 * Before the sessions' programs exist: the sidecars, and the marked services already joined to them
 * (created, not started, so that their image is there to read its entrypoint from).
 */
export function withSidecars(doc: ComposeDoc, sidecars: SidecarService[], labels: Record<string, string>): ComposeDoc {
  const out: ComposeDoc = structuredClone(doc);
  for (const s of sidecars) {
    const original = doc.services[s.service];
    if (!original) throw new MirrordError(`x-mirrord: no service ${s.service} in the compose project`, ExitCode.Internal);
    refuseUnsupported(s.service, original);
    out.services[s.sidecar] = sidecarService(s, original);
    out.services[s.service] = joinedService(s.sidecar, original);
  }
  for (const svc of Object.values(out.services)) addLabels(svc, labels);
  return out;
}

/** The whole project as it runs: withSidecars, and each marked service with its program under init and its env. */
export function withSessions(doc: ComposeDoc, sidecars: SidecarService[], sessions: SessionService[], labels: Record<string, string>): ComposeDoc {
  const out = withSidecars(doc, sidecars, labels);
  for (const s of sessions) {
    const svc = out.services[s.service]!;
    delete svc.command;
    // Compose clears the image's CMD when entrypoint is set, as `docker run --entrypoint` does.
    svc.entrypoint = [s.init.path, String(s.init.lifelinePort), ...s.argv];
    // A name declared without a value (null: Compose's shell found none) takes the target's.
    const declared = Object.entries(declaredEnv(svc.environment)).filter(([k, v]) => v !== null || !(k in s.remoteEnv));
    svc.environment = { ...escapeMap(s.remoteEnv), ...Object.fromEntries(declared), ...escapeMap(s.overrideEnv), ...escapeMap(s.layerEnv) };
  }
  return out;
}

/**
 * The program a service runs: its entrypoint and command from the file, else the image's, with
 * Compose's rule that an entrypoint from the file drops the image's CMD. Written back into the
 * file, so escaped as Compose prints it.
 */
export function serviceArgv(svc: ComposeService, image: { Entrypoint?: string[] | null; Cmd?: string[] | null }, name: string): string[] {
  const entrypoint = words(svc.entrypoint);
  const command = words(svc.command);
  const fromImage = (words: string[] | null | undefined) => (words ?? []).map(escapeValue);
  const argv = [...(entrypoint ?? fromImage(image.Entrypoint)), ...(command ?? (entrypoint !== undefined ? [] : fromImage(image.Cmd)))];
  if (argv.length === 0)
    throw new MirrordError(`service ${name} has no entrypoint or command, in the file or its image`, ExitCode.Config, 'Give the service a command');
  return argv;
}

/** The YAML `docker compose` reads back: the normalised values are already escaped (`$$`) as Compose prints them. */
export function toComposeYaml(doc: ComposeDoc): string {
  // YAML 1.1 rules: strings such as no, yes and off are quoted, as Compose prints them (a 1.1 reader would take them for booleans).
  return stringify(doc, { version: '1.1', lineWidth: 0, aliasDuplicateObjects: false });
}

/**
 * A value of ours (the target's env, the session's settings, an image's command) written into the
 * file: Compose interpolates what it reads, so each `$` is written `$$`.
 */
export function escapeValue(v: string): string {
  return v.replace(/\$/g, '$$$$');
}

function escapeMap(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, escapeValue(v)]));
}

/** What `docker compose config` printed, read as the values mean: `$$` is one `$` (x-mirrord blocks). */
export function unescapeValues(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(/\$\$/g, '$');
  if (Array.isArray(v)) return v.map(unescapeValues);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unescapeValues(x)]));
  return v;
}

function refuseUnsupported(name: string, svc: ComposeService): void {
  const mode = svc.network_mode;
  if (mode === 'host' || mode === 'none') {
    throw new MirrordError(
      `service ${name} has network_mode: ${mode}, which cannot be combined with x-mirrord`,
      ExitCode.Config,
      "The service joins its mirrord sidecar's network namespace; drop network_mode, or the service's x-mirrord",
    );
  }
  const replicas = (svc.deploy as { replicas?: number } | undefined)?.replicas ?? (svc.scale as number | undefined);
  if (replicas !== undefined && replicas > 1) {
    throw new MirrordError(
      `service ${name} has ${replicas} replicas; a service with x-mirrord runs one`,
      ExitCode.Config,
      'Set deploy.replicas: 1 for it, or give each copy its own service',
    );
  }
}

function sidecarService(s: SidecarService, original: ComposeService): ComposeService {
  const svc: ComposeService = {
    image: s.image,
    // The session's AP link: the CLI attaches to the sidecar's stdin and stdout.
    stdin_open: true,
    environment: escapeMap(s.env),
    labels: s.labels,
    logging: { driver: 'none' },
    restart: 'no',
  };
  if (s.netAdmin) svc.cap_add = ['NET_ADMIN'];
  for (const k of NAMESPACE_KEYS) if (original[k] !== undefined) svc[k] = structuredClone(original[k]);
  // service:X or container:X: the sidecar joins that namespace in the service's place.
  if (typeof original.network_mode === 'string') svc.network_mode = original.network_mode;
  // The service's name is its DNS name on each of its networks: its sidecar answers to it now.
  if (svc.network_mode === undefined) {
    const nets = (svc.networks as Record<string, { aliases?: string[] } | null> | undefined) ?? { default: null };
    svc.networks = Object.fromEntries(
      Object.entries(nets).map(([net, cfg]) => [net, { ...(cfg ?? {}), aliases: [...new Set([s.service, ...(cfg?.aliases ?? [])])] }]),
    );
  }
  // The engine refuses a host name beside network_mode service:X (the UTS namespace is X's then).
  if (s.hostname && svc.hostname === undefined && svc.network_mode === undefined) svc.hostname = s.hostname;
  const sysctls = netSysctls(original.sysctls);
  if (sysctls) svc.sysctls = sysctls;
  return svc;
}

function joinedService(sidecar: string, original: ComposeService): ComposeService {
  const svc = structuredClone(original);
  for (const k of NAMESPACE_KEYS) delete svc[k];
  svc.network_mode = `service:${sidecar}`;
  svc.volumes_from = [...((svc.volumes_from as string[] | undefined) ?? []), `${sidecar}:ro`];
  const deps = (svc.depends_on as Record<string, unknown> | undefined) ?? {};
  svc.depends_on = { ...deps, [sidecar]: { condition: 'service_started', required: true } };
  const sysctls = original.sysctls as Record<string, unknown> | undefined;
  if (sysctls) {
    // net.* sysctls are the namespace's: they went to the sidecar; Docker refuses them on a joined container.
    const rest = Object.fromEntries(Object.entries(sysctls).filter(([k]) => !k.startsWith('net.')));
    if (Object.keys(rest).length) svc.sysctls = rest;
    else delete svc.sysctls;
  }
  return svc;
}

function netSysctls(sysctls: unknown): Record<string, unknown> | undefined {
  if (!sysctls || typeof sysctls !== 'object') return undefined;
  const net = Object.fromEntries(Object.entries(sysctls as Record<string, unknown>).filter(([k]) => k.startsWith('net.')));
  return Object.keys(net).length ? net : undefined;
}

function addLabels(svc: ComposeService, labels: Record<string, string>): void {
  svc.labels = { ...((svc.labels as Record<string, string> | undefined) ?? {}), ...labels };
}

/** environment as `config` prints it (a map; a null value is a name without a value, left to Compose). */
function declaredEnv(env: unknown): Record<string, string | null> {
  if (!env) return {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      (env as string[]).map((e) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, null] : [e.slice(0, i), e.slice(i + 1)];
      }),
    );
  }
  return env as Record<string, string | null>;
}

function words(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return v.map(String);
  // `config` prints lists; a string would be a shell form, run as Compose runs it.
  return ['/bin/sh', '-c', String(v)];
}
