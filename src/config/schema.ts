import { z } from 'zod';

/**
 * The one schema of the configuration file. Types, defaults, `verify-config`, the README's key table
 * and the shipped JSON Schema (`schema/mirrord.schema.json`) all come from here. Keys keep mirrord's
 * own names so that an existing `mirrord.json` works unchanged.
 */

/** `"A;B"` or `["A", "B"]`, as mirrord accepts both. */
const semicolonList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (typeof v === 'string' ? v.split(';').map((s) => s.trim()).filter(Boolean) : v));

const port = z.number().int().min(1).max(65535);

const trafficFilter = z
  .strictObject({
    remote: z.array(z.string()).optional().describe('Only these destinations go through the target; everything else stays local.'),
    local: z.array(z.string()).optional().describe('These destinations stay local; everything else goes through the target.'),
  })
  .refine((f) => !(f.remote && f.local), { message: 'set either remote or local, not both' });

const httpFilter = z.strictObject({
  header_filter: z.string().optional().describe('Regex matched against each request header written as "Name: value".'),
  path_filter: z.string().optional().describe('Regex matched against the request path, with and without its query.'),
  method_filter: z.string().optional().describe('Regex matched against the request method.'),
  ports: z.array(port).optional().describe('Ports the HTTP filter applies to (default: all stolen ports).'),
});

const incomingMode = z.enum(['mirror', 'steal', 'off']);

const incomingObject = z.strictObject({
  mode: incomingMode.default('mirror').describe('mirror: copy incoming traffic to the local program; steal: take it; off: neither.'),
  ports: z.array(port).optional().describe('Only these remote ports are subscribed.'),
  ignore_ports: z.array(port).default([]).describe('Local ports never subscribed.'),
  port_mapping: z.array(z.tuple([port, port])).default([]).describe('[local, remote] pairs.'),
  http_filter: httpFilter.optional(),
});

const outgoingObject = z.strictObject({
  tcp: z.boolean().default(true).describe('Outgoing TCP connections leave from the target.'),
  udp: z.boolean().default(true).describe('Outgoing UDP leaves from the target.'),
  ignore_localhost: z.boolean().default(false).describe('Connections to 127.0.0.0/8 and ::1 stay local.'),
  filter: trafficFilter.optional().describe('Entries are [tcp://|udp://][name|ip|cidr][:port].'),
});

const dnsObject = z.strictObject({
  enabled: z.boolean().default(true).describe('Host names are resolved by the agent, as the target would.'),
  filter: trafficFilter.optional().describe('Entries are [name|ip|cidr][:port]; names match exactly or as a suffix with a leading dot.'),
});

const fsMode = z.enum(['read', 'write', 'local', 'localwithoverrides']);
/** Regexes (JavaScript syntax), as a list or `;`-separated; each must compile. */
const regexList = semicolonList.superRefine((list, ctx) => {
  for (const src of list) {
    try {
      new RegExp(src);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `invalid regex ${JSON.stringify(src)}: ${(err as Error).message}` });
    }
  }
});
const fsObject = z.strictObject({
  mode: fsMode.default('read').describe('read: remote reads, local writes; write: remote reads and writes; local: all local; localwithoverrides: local except the lists below.'),
  read_write: regexList.optional().describe('Paths (regexes) read and written in the target.'),
  read_only: regexList.optional().describe('Paths (regexes) read from the target; opening them for writing is local.'),
  local: regexList.optional().describe('Paths (regexes) always local.'),
  not_found: regexList.optional().describe('Paths (regexes) that do not exist for the program (ENOENT).'),
});

const envObject = z.strictObject({
  include: semicolonList.optional().describe('Only remote variables matching these patterns (* and ? wildcards) are merged.'),
  exclude: semicolonList.optional().describe('Remote variables matching these patterns are not merged.'),
  override: z.record(z.string(), z.string()).optional().describe('Set last, over local and remote values.'),
  env_file: z.string().optional().describe('A dotenv file applied over the remote environment.'),
});

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };
/** A byte count: a number, or a string with a unit (`"512KiB"`, `"64MiB"`, `"1GiB"`; powers of 1024). */
const byteSize = z.union([z.number().int().min(0), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a size like 512KiB, 64MiB or 1GiB, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return Math.floor(Number(m[1]) * unit);
});
export const DEFAULT_MOUNTS_MAX_SIZE = 100 * 1024 * 1024;
const mountsObject = z.strictObject({
  sync: z.boolean().default(true).describe("Copy the target's mounted volumes and bind mounts into the container at the same paths before it starts."),
  max_size: byteSize
    .default(DEFAULT_MOUNTS_MAX_SIZE)
    .describe('Largest total size of the files copied (bytes, or "64MiB"); a larger total stops the run with a message.'),
});

/** mirrord lets several sections be a bare boolean or mode string; normalise them to objects. */
const boolOr = <T extends z.ZodTypeAny>(obj: T, whenFalse: unknown, whenTrue: unknown = {}) =>
  z.preprocess((v) => (v === false ? whenFalse : v === true ? whenTrue : v), obj);

export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  target: z
    .union([
      z.string(),
      z.strictObject({ path: z.string().optional(), namespace: z.string().optional() }),
    ])
    .optional()
    .describe('docker/NAME_OR_ID, pod/NAME[/container/C], deployment/NAME, ..., or targetless.'),
  kubeconfig: z.string().optional().describe('Kubernetes: kubeconfig file (default KUBECONFIG, then ~/.kube/config).'),
  kube_context: z.string().optional().describe('Kubernetes: context of the kubeconfig to use (default: its current context).'),
  agent: z
    .strictObject({
      image: z.string().optional().describe('Agent image. Docker: built locally from this package when missing. Kubernetes: default mirrord-agent:<build hash>, which the nodes must be able to pull or have loaded.'),
      image_pull_policy: z.enum(['Always', 'IfNotPresent', 'Never']).optional().describe('Kubernetes: pull policy of the agent image (default IfNotPresent).'),
      image_pull_secrets: z.array(z.string()).optional().describe('Kubernetes: names of Secrets used to pull the agent image.'),
      namespace: z.string().optional().describe('Kubernetes: namespace of the agent Job (default: the target\'s; targetless: the context\'s).'),
      labels: z.record(z.string(), z.string()).optional().describe('Kubernetes: extra labels on the agent Job and pod.'),
      annotations: z.record(z.string(), z.string()).optional().describe('Kubernetes: extra annotations on the agent Job and pod.'),
      tolerations: z.array(z.record(z.string(), z.unknown())).optional().describe('Kubernetes: tolerations of the agent pod (default: tolerate every taint, to run on the target\'s node).'),
      resources: z.record(z.string(), z.unknown()).optional().describe('Kubernetes: resources of the agent container (requests/limits).'),
      ttl: z.number().int().min(0).default(1).describe('Seconds the agent waits after its last client left.'),
      ephemeral: z.boolean().default(false).describe('Kubernetes: run the agent as an ephemeral container in the target pod instead of a Job on its node.'),
      privileged: z.boolean().default(false).describe('Run the agent privileged instead of with the few capabilities it needs.'),
      startup_timeout: z.number().int().min(1).default(60).describe('Seconds to wait for the agent to answer.'),
      log_level: z.enum(['error', 'warn', 'info', 'debug', 'trace']).default('warn'),
    })
    .default({ ttl: 1, ephemeral: false, privileged: false, startup_timeout: 60, log_level: 'warn' }),
  feature: z
    .strictObject({
      network: z
        .strictObject({
          incoming: z
            .preprocess((v) => (typeof v === 'string' ? { mode: v } : v), incomingObject)
            .optional(),
          outgoing: boolOr(outgoingObject, { tcp: false, udp: false }).optional(),
          dns: boolOr(dnsObject, { enabled: false }).optional(),
        })
        .optional(),
      fs: z.preprocess((v) => (typeof v === 'string' ? { mode: v } : v), fsObject).optional(),
      env: boolOr(envObject, { include: [] }).optional(),
    })
    .optional(),
  container: z
    .strictObject({
      capture: z
        .enum(['off', 'namespace'])
        .default('off')
        .describe('namespace: every outgoing TCP connection and DNS query of the container goes through the target, statically linked programs included.'),
      cli_image: z.string().optional(),
      mounts: boolOr(mountsObject, { sync: false }, { sync: true }).optional(),
    })
    .optional(),
  skip_processes: semicolonList.optional().describe('Programs (by file name) that run without interception.'),
});

export type MirrordConfigInput = z.input<typeof configSchema>;
export type MirrordConfig = z.output<typeof configSchema>;

/** Resolved feature settings with every default filled in: what the rest of the code reads. */
export interface ResolvedFeatures {
  outgoing: z.output<typeof outgoingObject>;
  dns: z.output<typeof dnsObject>;
  incoming: z.output<typeof incomingObject>;
  fs: z.output<typeof fsObject>;
  env: z.output<typeof envObject>;
}

export function resolveFeatures(cfg: MirrordConfig): ResolvedFeatures {
  const f = cfg.feature;
  const target = typeof cfg.target === 'string' ? cfg.target : cfg.target?.path;
  if (target?.trim() === 'targetless') {
    // No target: nothing to read files, env or incoming traffic from; outgoing and DNS come from the agent's pod.
    return {
      outgoing: f?.network?.outgoing ?? outgoingObject.parse({}),
      dns: f?.network?.dns ?? dnsObject.parse({}),
      incoming: incomingObject.parse({ mode: 'off' }),
      fs: fsObject.parse({ mode: 'local' }),
      env: { include: [] },
    };
  }
  return {
    outgoing: f?.network?.outgoing ?? outgoingObject.parse({}),
    dns: f?.network?.dns ?? dnsObject.parse({}),
    incoming: f?.network?.incoming ?? incomingObject.parse({}),
    fs: f?.fs ?? fsObject.parse({}),
    env: f?.env ?? {},
  };
}

export function jsonSchema(): object {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
