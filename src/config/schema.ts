import { z } from 'zod';

/**
 * The one schema of the configuration file. Types, defaults, `verify-config`, docs/configuration.md
 * and the shipped JSON Schema (`schema/mirrord.schema.json`) all come from here. Keys keep mirrord's
 * own names so that an existing `mirrord.json` works unchanged.
 */

/** `"A;B"` or `["A", "B"]`, as mirrord accepts both. */
const semicolonList = z.union([z.string(), z.array(z.string())]).transform((v) =>
  typeof v === 'string'
    ? v
        .split(';')
        .map((s) => s.trim())
        .filter(Boolean)
    : v,
);

const port = z.number().int().min(1).max(65535);

const trafficFilter = z
  .strictObject({
    remote: z
      .array(z.string())
      .optional()
      .describe('Only the matches are remote (connected or resolved through the target); everything else stays local. Set this list or local, not both.'),
    local: z.array(z.string()).optional().describe('The matches stay local; everything else is remote. Set this list or remote, not both.'),
  })
  .refine((f) => !(f.remote && f.local), { message: 'set either remote or local, not both' });

const httpFilter = z.strictObject({
  header_filter: z
    .string()
    .optional()
    .describe(
      'Regex (case-insensitive) matched against each request header written as "Name: value". In steal mode only matching requests are stolen; every filter that is set must match.',
    ),
  path_filter: z.string().optional().describe('Regex (case-insensitive) matched against the request path, with and without its query.'),
  method_filter: z.string().optional().describe('Regex (case-insensitive) matched against the request method.'),
  ports: z.array(port).optional().describe('Ports the HTTP filter applies to (default: all stolen ports); other stolen ports are stolen whole.'),
});

const incomingMode = z.enum(['mirror', 'steal', 'off']);

const incomingObject = z.strictObject({
  mode: incomingMode.default('mirror').describe('mirror: copy incoming traffic to the local program; steal: take it; off: neither.'),
  ports: z.array(port).optional().describe('Only these remote ports are subscribed (default: all).'),
  ignore_ports: z.array(port).default([]).describe('Local listening ports that are never subscribed.'),
  port_mapping: z
    .array(z.tuple([port, port]))
    .default([])
    .describe("[[local, remote], ...]: a local listener on port local receives the target's port remote."),
  http_filter: httpFilter.optional().describe('Steal mode: only the HTTP requests that match go to the local program, the others to the real application.'),
  on_concurrent_steal: z
    .enum(['abort', 'continue', 'override'])
    .default('abort')
    .describe(
      'An unfiltered steal of a port that another session of the same agent steals: abort refuses with a line naming that session; continue shares the port (this session gets the requests no filter takes); override takes the port while this session holds it.',
    ),
});

const outgoingObject = z.strictObject({
  tcp: z.boolean().default(true).describe('Outgoing TCP connections leave from the target.'),
  udp: z
    .boolean()
    .default(true)
    .describe("Outgoing UDP (connected sockets and sendto) leaves from the target's network; UDP to port 53 also follows dns.enabled."),
  ignore_localhost: z.boolean().default(false).describe('Connections to 127.0.0.0/8 and ::1 stay local.'),
  filter: trafficFilter
    .optional()
    .describe(
      'Entries are [tcp://|udp://][name|ip|cidr][:port]. A name matches the IPs the program resolved it to through the agent, so local: ["cache:6379"] matches a connection to the IP that cache resolved to.',
    ),
});

const dnsObject = z.strictObject({
  enabled: z.boolean().default(true).describe('Host names are resolved by the agent, as the target would; false (or dns: false) resolves them locally.'),
  filter: trafficFilter
    .optional()
    .describe(
      'Which names are resolved remotely (remote) or locally (local). Entries are [name|ip|cidr][:port]; a name matches exactly, or as a suffix when written with a leading dot (.svc.cluster.local).',
    ),
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
  mode: fsMode
    .default('read')
    .describe(
      'read: reads from the target, writes local; write: reads and writes in the target; local: nothing remote; localwithoverrides: local except the lists below.',
    ),
  read_write: regexList
    .optional()
    .describe('Paths read and written in the target. Regexes (JavaScript syntax, "A;B" or a list), matched anywhere in the path unless anchored with ^.'),
  read_only: regexList.optional().describe('Paths read from the target; opening them for writing is local. Regexes, as read_write.'),
  local: regexList.optional().describe('Paths that are always local. Regexes, as read_write.'),
  not_found: regexList.optional().describe('Paths that do not exist for the program (ENOENT). Regexes, as read_write.'),
});

const envObject = z.strictObject({
  include: semicolonList.optional().describe('Only remote variables matching these patterns are merged (default: all). "A;B_*" or a list; * and ? wildcards.'),
  exclude: semicolonList.optional().describe('Remote variables matching these patterns are dropped ("A;B_*" or a list).'),
  override: z.record(z.string(), z.string()).optional().describe('{NAME: value}, set last, over local and remote values and env_file.'),
  env_file: z.string().optional().describe('A dotenv file applied over the remote environment.'),
});

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
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
  sync: z.boolean().default(true).describe("Copy the target's volumes and bind mounts into the container at the same paths before it starts."),
  max_size: byteSize
    .default(DEFAULT_MOUNTS_MAX_SIZE)
    .describe(
      'Largest total size copied: bytes, or a string with a unit ("512KiB", "64MiB", "1GiB"; powers of 1024). A larger total stops the run before the container starts, with a message and exit 78.',
    ),
});

/** mirrord lets several sections be a bare boolean or mode string; normalise them to objects. */
const boolOr = <T extends z.ZodTypeAny>(obj: T, whenFalse: unknown, whenTrue: unknown = {}) =>
  z.preprocess((v) => (v === false ? whenFalse : v === true ? whenTrue : v), obj);

export const configSchema = z.strictObject({
  $schema: z
    .string()
    .optional()
    .describe('Path or URL of a JSON Schema for editor completion (schema/mirrord.schema.json ships with the package); not used by mirrord.'),
  target: z
    .union([
      z.string(),
      z.strictObject({
        path: z.string().optional().describe('The target string.'),
        namespace: z.string().optional().describe("Kubernetes: namespace of the target (-n wins; default: the kube context's namespace, then default)."),
      }),
    ])
    .optional()
    .describe('The target: docker/NAME_OR_ID, pod/NAME[/container/C], deployment/NAME, ..., or targetless (-t wins); or {path, namespace}.'),
  kubeconfig: z.string().optional().describe('Kubernetes: kubeconfig file (default KUBECONFIG, then ~/.kube/config).'),
  kube_context: z.string().optional().describe('Kubernetes: context of the kubeconfig to use (default: its current context).'),
  agent: z
    .strictObject({
      image: z
        .string()
        .optional()
        .describe(
          'Agent image (default mirrord-agent:<hash of its recipe>). Docker: built locally from this package when missing. Kubernetes: the nodes must be able to pull it or have it loaded.',
        ),
      image_pull_policy: z.enum(['Always', 'IfNotPresent', 'Never']).optional().describe('Kubernetes: pull policy of the agent image (default IfNotPresent).'),
      image_pull_secrets: z.array(z.string()).optional().describe('Kubernetes: names of Secrets used to pull the agent image.'),
      namespace: z
        .string()
        .optional()
        .describe("Kubernetes: namespace of the agent Job (default: the target's; targetless: the namespace the session runs in)."),
      labels: z.record(z.string(), z.string()).optional().describe('Kubernetes: labels added to the agent Job and pod.'),
      annotations: z.record(z.string(), z.string()).optional().describe('Kubernetes: annotations added to the agent Job and pod.'),
      tolerations: z
        .array(z.record(z.string(), z.unknown()))
        .optional()
        .describe("Kubernetes: tolerations of the agent pod; they replace the default, which tolerates every taint (to run on the target's node)."),
      resources: z
        .record(z.string(), z.unknown())
        .optional()
        .describe('Kubernetes: resources of the agent container (requests/limits); they replace the default small requests.'),
      ttl: z
        .number()
        .int()
        .min(0)
        .default(1)
        .describe('Seconds the agent waits after its last session left before exiting (Kubernetes; Docker with agent.shared).'),
      shared: z
        .boolean()
        .optional()
        .describe(
          'Docker: one agent per target for every session that sets it (default false: an agent per session). A session joins a live shared agent of the same version instead of starting one, with its own token, streams, files and subscriptions; sessions steal one port with different HTTP filters (on_concurrent_steal).',
        ),
      ephemeral: z.boolean().default(false).describe('Kubernetes: run the agent as an ephemeral container in the target pod instead of a Job on its node.'),
      privileged: z.boolean().default(false).describe('Run the agent privileged instead of with the few capabilities it needs.'),
      startup_timeout: z.number().int().min(1).default(60).describe("Seconds to wait for the agent's handshake."),
      log_level: z
        .enum(['error', 'warn', 'info', 'debug', 'trace'])
        .default('warn')
        .describe("Agent log level, shown on stderr with MIRRORD_LOG=debug (set debug for the agent's own detail)."),
    })
    .default({ ttl: 1, ephemeral: false, privileged: false, startup_timeout: 60, log_level: 'warn' })
    .describe('The agent: the short-lived process that joins the target for the session.'),
  feature: z
    .strictObject({
      network: z
        .strictObject({
          incoming: z
            .preprocess((v) => (typeof v === 'string' ? { mode: v } : v), incomingObject)
            .optional()
            .describe('The target\'s incoming traffic. The whole section may be just the mode string ("incoming": "steal").'),
          outgoing: boolOr(outgoingObject, { tcp: false, udp: false })
            .optional()
            .describe('Outgoing connections. false is shorthand for {tcp: false, udp: false}.'),
          dns: boolOr(dnsObject, { enabled: false }).optional().describe('Host name resolution. false is shorthand for {enabled: false}.'),
        })
        .optional()
        .describe('Network features: incoming, outgoing, DNS.'),
      fs: z
        .preprocess((v) => (typeof v === 'string' ? { mode: v } : v), fsObject)
        .optional()
        .describe('Remote files. The section may be just the mode string ("fs": "write").'),
      env: boolOr(envObject, { include: [] }).optional().describe('The remote environment. false is shorthand for {include: []}: no remote variable.'),
    })
    .optional()
    .describe('What of the target the program gets: network, files, environment.'),
  container: z
    .strictObject({
      capture: z
        .enum(['off', 'namespace'])
        .default('off')
        .describe('namespace: every outgoing TCP connection and DNS query of the container goes through the target, statically linked programs included.'),
      cli_image: z.string().optional().describe('Accepted for compatibility with mirrord; not used yet.'),
      mounts: boolOr(mountsObject, { sync: false }, { sync: true })
        .optional()
        .describe("The copy of the target's mounted files. false is shorthand for {sync: false}, true for {sync: true}."),
    })
    .optional()
    .describe('mirrord container only.'),
  skip_processes: semicolonList
    .optional()
    .describe('Executables (file names, "a;b" or a list) that run without interception; programs they start are still intercepted.'),
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
