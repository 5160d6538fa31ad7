import { z } from 'zod';
import { agentLogLevel } from './log-level.js';
import { stringMap } from './shapes.js';
import { differs, noEffect, ours } from './status.js';

/**
 * `agent.*`: every key of mirrord's agent section is accepted. The ones that shape our agent's
 * launch are honoured; the ones our agent has no counterpart for, or that are not wired into the
 * Kubernetes agent spec yet (src/platforms/kubernetes/agent-spec.ts), are accepted without effect and
 * named by `mirrord verify-config`.
 */

/** mirrord's own agent images speak mirrord's protocol, not ours: such a setting is noted and dropped. */
export const METALBEAR_IMAGE = /^(?:ghcr\.io\/)?metalbear-co\/mirrord(?:[:@]|$)/;

const image = z
  .union([
    z.string(),
    z.strictObject({
      registry: z.string().optional().describe("Image name without its tag (mirrord's expanded form)."),
      tag: z.string().optional().describe('Image tag (default latest).'),
    }),
  ])
  .transform((v) => (typeof v === 'string' ? v : v.registry ? `${v.registry}:${v.tag ?? 'latest'}` : undefined))
  .transform((v) => (v && METALBEAR_IMAGE.test(v) ? undefined : v));

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
const pullPolicy = z.string().transform((v, ctx) => {
  const found = PULL_POLICIES.find((p) => p.toLowerCase() === v.trim().toLowerCase());
  if (!found) {
    ctx.addIssue({ code: 'custom', message: `expected Always, IfNotPresent or Never (any case), got ${JSON.stringify(v)}: Kubernetes knows no other policy` });
    return z.NEVER;
  }
  return found;
});

/** `["name"]` (ours) or mirrord's `[{name: "..."}]`. */
const pullSecrets = z.array(z.union([z.string(), z.strictObject({ name: z.string() })])).transform((l) => l.map((s) => (typeof s === 'string' ? s : s.name)));

const seconds = z.number().int().min(0);
const listenAddress = /^(?:\[[0-9A-Fa-f:.]+\]|[^:\s]*):\d{1,5}$/;

/** Linux capabilities (capabilities(7)) by their names without CAP_. */
const CAPABILITIES = new Set(
  (
    'CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST ' +
    'NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE ' +
    'SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG ' +
    'WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
  ).split(' '),
);

function capability(c: string, ctx: z.RefinementCtx): string {
  const name = c.trim().toUpperCase().replace(/^CAP_/, '');
  if (!CAPABILITIES.has(name)) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(c)} is not a Linux capability (capabilities(7)), such as NET_ADMIN` });
    return z.NEVER;
  }
  return name;
}
const count = z.number().int().min(0);

export const agentSchema = z
  .strictObject({
    image: image
      .optional()
      .describe(
        'Agent image: a name, or {registry, tag} (default mirrord-agent:<hash of its recipe>). Docker: built locally from this package when missing. Kubernetes: the nodes must be able to pull it or have it loaded.',
      )
      .meta(differs("mirrord's own images (ghcr.io/metalbear-co/mirrord) are ignored with a notice: they do not speak this tool's protocol.")),
    image_pull_policy: pullPolicy
      .optional()
      .describe('Kubernetes: pull policy of the agent image, Always, IfNotPresent or Never in any case (default IfNotPresent).')
      .meta(differs('Written in any case ("always"); a policy Kubernetes does not know is refused when the file is read, not by the API server.')),
    image_pull_secrets: pullSecrets.optional().describe('Kubernetes: Secrets used to pull the agent image, as [{name: S}] (mirrord) or ["S"].'),
    namespace: z.string().optional().describe("Kubernetes: namespace of the agent Job (default: the target's; targetless: the namespace the session runs in)."),
    labels: stringMap.optional().describe('Kubernetes: labels added to the agent Job and pod.'),
    annotations: stringMap.optional().describe('Kubernetes: annotations added to the agent Job and pod.'),
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
        'Docker, and Kubernetes in job mode: one agent per target for every session that sets it (default false: an agent per session). A session joins a live shared agent of the same version instead of starting one, with its own token, streams, files and subscriptions; sessions steal one port with different HTTP filters (on_concurrent_steal).',
      )
      // Ours: mirrord shares agents through its operator only.
      .meta(ours),
    ephemeral: z.boolean().default(false).describe('Kubernetes: run the agent as an ephemeral container in the target pod instead of a Job on its node.'),
    privileged: z.boolean().default(false).describe('Run the agent privileged instead of with the few capabilities it needs.'),
    startup_timeout: z.number().int().min(1).default(60).describe("Seconds to wait for the agent's handshake."),
    fd_passing: z
      .enum(['auto', 'off'])
      .default('auto')
      .describe(
        "Docker targets, Linux: auto hands the program sockets made in the target's network namespace (fd passing) when the CLI and the engine share a kernel, so its bytes skip the agent link; off always uses the stream. MIRRORD_AGENT_FD_PASSING=auto|off overrides it (docs/fast-path.md).",
      )
      .meta(ours),
    log_level: agentLogLevel
      .default('warn')
      .describe(
        'Agent log level (error, warn, info, debug, trace), or a RUST_LOG filter as mirrord takes ("mirrord=debug,warn": the level for mirrord, else the default one). Shown on stderr with MIRRORD_LOG=debug.',
      )
      .meta(differs('A RUST_LOG filter is reduced to one level: the one given for mirrord (or mirrord_agent), else its default directive.')),
    node_selector: stringMap
      .optional()
      .describe("Kubernetes, targetless: node selector of the agent pod (a targeted agent runs on its target's node).")
      .meta(differs("targetless sessions only: a targeted agent's pod is bound to its target's node")),
    service_account: z
      .string()
      .optional()
      .describe("Kubernetes: service account of the agent Job's pod (its token is not mounted: the agent never calls the API)."),
    priority_class: z.string().optional().describe("Kubernetes: priority class of the agent Job's pod."),
    security_context: z
      .record(z.string(), z.unknown())
      .optional()
      .describe(
        "Kubernetes: seccomp and AppArmor profiles of the agent Job's pod: {seccomp_profile: {type, localhost_profile}, app_armor_profile: {type, localhost_profile}}.",
      )
      .meta(differs("job mode only: an ephemeral agent runs under its target pod's profiles")),
    disabled_capabilities: z
      .array(z.string().transform((c, ctx) => capability(c, ctx)))
      .optional()
      .describe(
        "Capabilities the agent is not given (CAP_ prefix and case ignored). It asks for NET_ADMIN and NET_RAW (iptables: steal), SYS_PTRACE (the target's files and environment), DAC_READ_SEARCH (files of other users), DAC_OVERRIDE when the session may write files and, on Kubernetes in job mode, SYS_ADMIN. What needs a dropped one fails with a message naming it.",
      )
      .meta(differs('ignored with agent.privileged; a name that is no capability is refused when the file is read')),
    json_log: z
      .boolean()
      .optional()
      .describe(
        "The agent's log as JSON lines ({timestamp, level, target, fields: {message}}, as mirrord's agent): kubectl logs of the agent pod show them; the CLI prints them in its own format (MIRRORD_LOG=debug).",
      )
      .meta(differs("Docker: the agent's stdout carries the link, so its container has no log driver; its stderr (the JSON lines) reaches the CLI only")),
    communication_timeout: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Seconds without any frame from the client after which the agent gives its client up and ends the session (default 15, the link heartbeat of docs/protocol.md). The agent pings often enough that a live client always answers in time.',
      )
      .meta(differs("unset, the link's own 15 s apply (mirrord's default is 30 s)")),
    flush_connections: z
      .boolean()
      .optional()
      .describe(
        'When stealing a port starts, the connections already established to it are flushed from conntrack (default true, as mirrord): their next packet meets the steal rule and is reset, and the client reconnects into the steal.',
      ),
    metrics: z
      .string()
      .optional()
      .refine((v) => v === undefined || listenAddress.test(v), { message: 'expected an address such as 0.0.0.0:9000 or [::]:9000' })
      .describe(
        "Address (host:port) where the agent serves Prometheus metrics at /metrics, in the target's network namespace: sessions, connections and bytes carried, port subscriptions by mode, DNS queries, and the process's own.",
      ),
    check_out_of_pods: z
      .boolean()
      .optional()
      .describe(
        "Kubernetes, job mode: before creating the agent pod, check that the target's node has room for one more pod (allocatable pods against the pods on it) and fail with a clear line if not.",
      )
      .meta(differs('off by default; ephemeral and targetless agents are not checked (an ephemeral container adds no pod)')),
    nftables: z
      .boolean()
      .optional()
      .describe("The agent's iptables back end: true iptables-nft, false iptables-legacy; unset, the one whose nat table already holds rules."),
    dns: z
      .strictObject({
        timeout: z.number().int().min(1).optional().describe("Seconds for each of the agent's DNS queries (default: the target's resolv.conf, else 5)."),
        attempts: z.number().int().min(1).optional().describe("Attempts of each DNS query (default: the target's resolv.conf, else 2)."),
      })
      .optional()
      .describe("The agent's DNS resolver: timeout and attempts instead of the target's resolv.conf options.")
      .meta(differs("unset, the target's resolv.conf options apply (mirrord's defaults are 1 s and 1 attempt)")),
    clean_iptables_on_start: z
      .boolean()
      .optional()
      .describe("Remove mirrord's leftover iptables rules at start.")
      .meta(noEffect('always done: a new agent sweeps the chains of sessions whose agent is gone')),
    disable_mesh_sidecar_injection: z
      .boolean()
      .optional()
      .describe(
        'Kubernetes (default true, as mirrord): the agent pod carries sidecar.istio.io/inject: "false" (label and annotation), linkerd.io/inject: disabled and kuma.io/sidecar-injection: disabled, so no mesh injects a proxy into it; false leaves them out.',
      ),
    exclude_from_mesh: z
      .boolean()
      .optional()
      .describe("Exclude an ephemeral agent's port from the mesh proxy.")
      .meta(noEffect('the agent is reached through port-forward, which no mesh proxy sees')),
    external_ip_fix: z
      .boolean()
      .optional()
      .describe("Pass connections through to the target's pod IP rather than 127.0.0.1.")
      .meta(noEffect('not needed: passed-through connections keep their original destination')),
    http_detection_timeout: seconds
      .optional()
      .describe('Seconds to wait for the first bytes of a stolen connection to tell HTTP.')
      .meta(noEffect("our agent's HTTP detection has no such setting")),
    inject_headers: z.boolean().optional().describe('Add Mirrord-Agent headers to HTTP responses.').meta(noEffect('responses are passed unchanged')),
    override_cache_control: z
      .boolean()
      .optional()
      .describe('Replace Cache-Control in responses that went through the agent.')
      .meta(noEffect('responses are passed unchanged')),
    jaq_time_limit: count
      .optional()
      .describe(
        'Longest run of one jq header filter on one request (milliseconds, default 500); a longer run is cut (its thread ended, the agent never blocked) and the request does not match, so it goes to the application.',
      )
      .meta(differs('read as milliseconds, as mirrord documents it (mirrord 3.x agents read the value in seconds, and its config defaults to 1)')),
    max_body_buffer_size: count.optional().describe('Largest HTTP body a body_filter reads (bytes, default 65535); a longer body does not match.'),
    max_body_buffer_timeout: count
      .optional()
      .describe('Longest wait for the whole HTTP body of a request a body_filter reads (milliseconds, default 2000); a slower body does not match.'),
  })
  .default({ ttl: 1, ephemeral: false, privileged: false, startup_timeout: 60, fd_passing: 'auto', log_level: 'warn' })
  .describe('The agent: the short-lived process that joins the target for the session.');

export type AgentConfig = z.output<typeof agentSchema>;

/**
 * The agent keys the agent itself honours, as the environment it reads them from (the names of
 * agent/src/settings.ts, SETTINGS_ENV; test/unit/agent-keys.test.ts holds both to each other). The
 * same on Docker and Kubernetes.
 */
export type AgentKeys = Partial<
  Pick<
    AgentConfig,
    | 'json_log'
    | 'communication_timeout'
    | 'flush_connections'
    | 'metrics'
    | 'nftables'
    | 'dns'
    | 'disabled_capabilities'
    | 'privileged'
    | 'max_body_buffer_size'
    | 'max_body_buffer_timeout'
    | 'jaq_time_limit'
  >
>;

export function agentKeysEnv(a: AgentKeys): Record<string, string> {
  const env: Record<string, string> = {};
  const flag = (v: boolean | undefined) => (v === undefined ? undefined : v ? '1' : '0');
  const set = (name: string, v: string | number | undefined) => {
    if (v !== undefined) env[name] = String(v);
  };
  set('MIRRORD_AGENT_JSON_LOG', flag(a.json_log));
  set('MIRRORD_AGENT_COMMUNICATION_TIMEOUT', a.communication_timeout);
  set('MIRRORD_AGENT_FLUSH_CONNECTIONS', flag(a.flush_connections));
  set('MIRRORD_AGENT_METRICS', a.metrics);
  set('MIRRORD_AGENT_NFTABLES', flag(a.nftables));
  set('MIRRORD_AGENT_DNS_TIMEOUT', a.dns?.timeout);
  set('MIRRORD_AGENT_DNS_ATTEMPTS', a.dns?.attempts);
  set('MIRRORD_AGENT_MAX_BODY_BUFFER_SIZE', a.max_body_buffer_size);
  set('MIRRORD_AGENT_MAX_BODY_BUFFER_TIMEOUT', a.max_body_buffer_timeout);
  // agent/src/incoming/jq.ts reads it (milliseconds; 0 is the default).
  set('MIRRORD_AGENT_JAQ_TIME_LIMIT', a.jaq_time_limit || undefined);
  if (a.disabled_capabilities?.length && !a.privileged) env.MIRRORD_AGENT_DISABLED_CAPABILITIES = a.disabled_capabilities.join(',');
  return env;
}
