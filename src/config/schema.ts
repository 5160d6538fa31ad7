import { z } from 'zod';
import { agentSchema } from './agent-schema.js';
import { copyTargetObject, dnsObject, envObject, featureSchema, fsObject, incomingObject, outgoingObject } from './feature-schema.js';
import { anything, boolOr, byteSize, semicolonList, stringOrList } from './shapes.js';
import { NEEDS_OPERATOR, differs, noEffect, ours, refused } from './status.js';
import { SIDECAR_FLAGS, SidecarArgsError, parseSidecarArgs } from './sidecar-args.js';
import { targetSchema } from './target-schema.js';
import { agentLogLevel } from './log-level.js';

/**
 * The one schema of the configuration file. Types, defaults, `verify-config`, docs/configuration.md
 * and the shipped JSON Schema (`schema/mirrord.schema.json`) all come from here. Keys keep mirrord's
 * own names so that an existing `mirrord.json` works unchanged: every key of mirrord's open-source
 * configuration is accepted, and its status here (src/config/status.ts) is in the metadata.
 */

export const DEFAULT_MOUNTS_MAX_SIZE = 100 * 1024 * 1024;
const mountsObject = z.strictObject({
  sync: z.boolean().default(true).describe("Copy the target's volumes and bind mounts into the container at the same paths before it starts."),
  max_size: byteSize
    .default(DEFAULT_MOUNTS_MAX_SIZE)
    .describe(
      'Largest total size copied: bytes, or a string with a unit ("512KiB", "64MiB", "1GiB"; powers of 1024). A larger total stops the run before the container starts, with a message and exit 78.',
    ),
});

const seconds = z.number().int().min(0);
const positiveSeconds = z.number().int().min(1);
const logLevelKey = (name: string, where: string) =>
  agentLogLevel
    .optional()
    .describe(
      `Level of the log of ${where}: error, warn, info, debug, trace, or a RUST_LOG filter ("mirrord=debug,warn": the level it gives mirrord's own code). Default: the CLI's (MIRRORD_LOG, else warn).`,
    )
    .meta(differs(`one level for the whole of ${name} (mirrord filters by module)`));
const logDestinationKey = (where: string, file: string) =>
  z
    .string()
    .min(1)
    .optional()
    .describe(
      `File ${where} writes its log to (appended; parent directories are made). A path ending in / or an existing directory gets ${file}-SESSION.log inside. Default: stderr, with the CLI's own lines.`,
    )
    .meta(differs('default stderr (mirrord: a file in the temporary directory)'));
const jsonLogKey = (where: string) =>
  z
    .boolean()
    .default(false)
    .describe(`The log lines of ${where} as JSON objects ({timestamp, level, target, fields: {message}}, as mirrord's), one a line.`)
    .meta(differs('default false (mirrord: true)'));

/** mirrord's internal proxy is its intproxy process; ours is in the CLI process (exec) or the sidecar (container). */
const internalProxy = z
  .strictObject({
    start_idle_timeout: positiveSeconds
      .optional()
      .describe(
        'Seconds the intproxy waits for the first process of the program to connect; if none has by then, the session ends (the agent is released, a line says so) and the program runs on without mirrord.',
      )
      .meta(differs('default: no limit (mirrord: 60 s)')),
    idle_timeout: positiveSeconds
      .optional()
      .describe(
        'Seconds the intproxy stays without any connected process (after the first one) before the session ends (the agent is released, a line says so); the program, if it still runs, runs on without mirrord.',
      )
      .meta(differs('default: no limit (mirrord: 5 s); here the session also ends with the program')),
    socket_timeout: positiveSeconds
      .optional()
      .describe(
        "Seconds a process's connection to the intproxy may go without a request before the intproxy closes it (the layer of that process then keeps its calls local). Default: no limit.",
      )
      .meta(differs('default: no limit (mirrord: 31536000 s)')),
    ping_interval: positiveSeconds
      .max(3600)
      .optional()
      .describe(
        "Seconds between the intproxy's pings to the agent (default 5). The link is declared lost after 3 intervals without a frame from the agent, and never before 15 s (the default), which the agent's start shares.",
      )
      .meta(differs('a link is never declared lost before 15 s, so intervals under 5 s ping more often without detecting a loss sooner')),
    process_logging_interval: positiveSeconds
      .optional()
      .describe(
        "Every N seconds the intproxy logs (at info) each process connected to it: pid, parent, executable, how long connected. The log is internal_proxy.log_destination's, at internal_proxy.log_level (set info or lower to see it).",
      ),
    log_level: logLevelKey('the intproxy', 'the intproxy'),
    log_destination: logDestinationKey(
      'the intproxy (exec: the CLI process writes it; container: the CLI writes the lines of the sidecar)',
      'mirrord-intproxy',
    ),
    json_log: jsonLogKey('the intproxy'),
  })
  .optional()
  .describe("mirrord's internal proxy: here the intproxy, inside the CLI process (exec) or the sidecar (container).");

const RELAY = "mirrord container's external proxy is here the CLI's relay between the sidecar's attached stdin/stdout and the agent's link";
const externalProxy = z
  .strictObject({
    start_idle_timeout: positiveSeconds
      .optional()
      .describe('mirrord container: seconds the CLI waits for the sidecar to connect (start and announce its intproxy); default agent.startup_timeout.')
      .meta(differs(`${RELAY}: it waits for the sidecar's ready line (mirrord: 60 s for the first connection)`)),
    idle_timeout: seconds
      .optional()
      .describe("Seconds mirrord's external proxy stays without connections.")
      .meta(noEffect(`${RELAY}: it carries exactly one connection, the sidecar's, which lives as long as the session, and ends with it`)),
    log_level: logLevelKey('the relay', "the CLI's relay to the sidecar (container)"),
    log_destination: logDestinationKey(
      "the CLI's relay to the sidecar (container; its log says when it starts and ends and the bytes it carried each way)",
      'mirrord-extproxy',
    ),
    json_log: jsonLogKey("the CLI's relay to the sidecar"),
    host_ip: z
      .string()
      .optional()
      .describe("Address mirrord's external proxy listens on.")
      .meta(noEffect(`${RELAY}: nothing listens on the host, so there is no address to choose`)),
    tls_enable: z
      .boolean()
      .optional()
      .describe("TLS between mirrord's two proxies.")
      .meta(noEffect(`${RELAY}: the engine's attach stream is the link, no network connection to encrypt`)),
  })
  .optional()
  .describe("mirrord's external proxy of mirrord container: here the CLI's relay between the sidecar and the agent.");

/** Build tools mirrord leaves alone with skip_build_tools (its list, word for word). */
export const BUILD_TOOLS = [
  'as',
  'cc',
  'ld',
  'go',
  'air',
  'asm',
  'cc1',
  'cgo',
  'dlv',
  'gcc',
  'git',
  'link',
  'math',
  'cargo',
  'hpack',
  'rustc',
  'compile',
  'collect2',
  'cargo-watch',
  'debugserver',
];

const containerNoEffect = (why: string) => noEffect(`the sidecar is ours: ${why}`);

export const configSchema = z.strictObject({
  $schema: z
    .string()
    .optional()
    .describe('Path or URL of a JSON Schema for editor completion (schema/mirrord.schema.json ships with the package); not used by mirrord.')
    .meta(ours),
  target: targetSchema,
  kubeconfig: z
    .string()
    .optional()
    .describe(
      'Kubernetes: kubeconfig file (default KUBECONFIG, then ~/.kube/config); ~ and $VAR are expanded, and a colon-separated list is merged as kubectl merges KUBECONFIG (the first file to define a name or a current context wins).',
    ),
  kube_context: z.string().optional().describe('Kubernetes: context of the kubeconfig to use (default: its current context).'),
  key: z
    .string()
    .optional()
    .describe(
      'Session key: what {{ key }} stands for in this file (MIRRORD_KEY wins; default: the user name). Often used in HTTP filters ("baggage: .*mirrord-session={{ key }}").',
    )
    .meta(differs('the default is the user name (mirrord generates a random one)')),
  agent: agentSchema,
  feature: featureSchema,
  container: z
    .strictObject({
      capture: z
        .enum(['off', 'namespace'])
        .default('off')
        .describe('namespace: every outgoing TCP connection and DNS query of the container goes through the target, statically linked programs included.')
        .meta(ours),
      mounts: boolOr(mountsObject, { sync: false }, { sync: true })
        .optional()
        .describe("The copy of the target's mounted files. false is shorthand for {sync: false}, true for {sync: true}.")
        .meta(ours),
      cli_image: z.string().optional().describe("mirrord's CLI image for the sidecar.").meta(containerNoEffect('its image is built from this package')),
      cli_image_lib_path: z
        .string()
        .optional()
        .describe('Path of the layer inside cli_image.')
        .meta(containerNoEffect('the layer is at /mirrord/libmirrord_layer.so')),
      cli_prevent_cleanup: z
        .boolean()
        .optional()
        .describe('Keep the sidecar container after the run.')
        .meta(containerNoEffect('it is always removed (AutoRemove)')),
      cli_tls_path: z.string().optional().describe("Path of the proxies' TLS certificate in the sidecar.").meta(containerNoEffect('no TLS between proxies')),
      cli_extra_args: z
        .array(z.string())
        .optional()
        .superRefine((args, ctx) => {
          if (!args) return;
          try {
            parseSidecarArgs(args);
          } catch (err) {
            if (!(err instanceof SidecarArgsError)) throw err;
            ctx.addIssue({ code: 'custom', message: err.message });
          }
        })
        .describe(
          `Extra docker run flags of the sidecar container, which owns the network namespace the container joins (so -p here publishes a port of the container): ${SIDECAR_FLAGS}. Any other flag is refused with its name.`,
        )
        .meta(
          differs(
            "the sidecar is created through the engine's API: these flags are read into its create call, and flags about its program or its attachment (--name, -d, -t, --entrypoint, --log-driver, ...) are refused",
          ),
        ),
      override_host_ip: z
        .string()
        .optional()
        .describe('The IP the sidecar reaches the host at.')
        .meta(
          containerNoEffect(
            "it dials no host address: its link to the agent is its attached stdin/stdout, relayed by the CLI to a Docker target's agent (its own attached stdio) or a Kubernetes agent (the API server's port-forward); the program's files and layer come from a volume",
          ),
        ),
      host_gateway_detection: z
        .boolean()
        .optional()
        .describe("Reach the host through the runtime's host-gateway.")
        .meta(containerNoEffect('it dials no host address (see override_host_ip): its link to the agent is its attached stdin/stdout')),
      platform: z
        .string()
        .optional()
        .describe("Platform of the local container's image (linux/amd64, linux/arm64), as docker run --platform (which wins).")
        .meta(differs("the local container's platform: the sidecar runs the engine's own")),
    })
    .optional()
    .describe('mirrord container only.'),
  skip_processes: semicolonList
    .optional()
    .describe('Executables (file names, "a;b" or a list) that run without interception; programs they start are still intercepted.'),
  skip_build_tools: z
    .boolean()
    .default(false)
    .describe(`Build tools (${BUILD_TOOLS.join(', ')}) run without interception, as with skip_processes; programs they start are still intercepted.`)
    .meta(differs('default false: here git and go reach the target like any program (mirrord defaults to true)')),
  skip_extra_build_tools: stringOrList.optional().describe('More executables skipped when skip_build_tools is true.'),
  accept_invalid_certificates: z
    .boolean()
    .optional()
    .describe(
      "Kubernetes: accept the API server's certificate even when it does not verify (kubectl's --insecure-skip-tls-verify); default: the kubeconfig's setting.",
    ),
  operator: z
    .boolean()
    .optional()
    .superRefine((v, ctx) => {
      if (v === true) ctx.addIssue({ code: 'custom', message: NEEDS_OPERATOR });
    })
    .describe("mirrord: use mirrord's operator. false is accepted (it never is used here); true is refused.")
    .meta(refused(`true ${NEEDS_OPERATOR}`)),
  profile: anything
    .superRefine((_v, ctx) => ctx.addIssue({ code: 'custom', message: NEEDS_OPERATOR }))
    .optional()
    .describe('mirrord: a profile stored by the operator.')
    .meta(refused(NEEDS_OPERATOR)),
  multi_cluster: z
    .boolean()
    .optional()
    .describe("mirrord: sessions across the operator's clusters.")
    .meta(noEffect('only with the operator; without it, a single cluster')),
  internal_proxy: internalProxy,
  external_proxy: externalProxy,
  telemetry: z.boolean().optional().describe("mirrord's usage statistics.").meta(noEffect('nothing is ever sent')),
  api: z.boolean().optional().describe("mirrord's local session monitor socket.").meta(noEffect('no session monitor here')),
  use_proxy: z
    .boolean()
    .optional()
    .describe(
      "false: HTTP_PROXY, HTTPS_PROXY (and their lower-case spellings) are removed from the CLI's environment before any request, so the program does not inherit them either; a value in the target's environment still reaches it. Default true: the variables are left as they are.",
    )
    .meta(differs("true: the Kubernetes client goes through the kubeconfig's proxy-url, not through HTTP(S)_PROXY (mirrord's uses the variables)")),
  sip_binaries: stringOrList.optional().describe('macOS: binaries to patch for SIP.').meta(noEffect('macOS only; this tool runs programs on Linux')),
  skip_sip: stringOrList.optional().describe('macOS: binaries never patched for SIP.').meta(noEffect('macOS only')),
  experimental: z
    .record(z.string(), anything)
    .optional()
    .describe("mirrord's experimental switches.")
    .meta(noEffect("each is a workaround inside mirrord's own layer")),
  startup_retry: z
    .record(z.string(), anything)
    .optional()
    .describe('mirrord: retries while connecting to the cluster.')
    .meta(noEffect('no retry settings here')),
  ci: z.record(z.string(), anything).optional().describe('mirrord ci: settings of its CI sessions.').meta(noEffect('no mirrord ci command here')),
  traceparent: z.string().optional().describe('OpenTelemetry trace parent of the session.').meta(noEffect('no tracing here')),
  baggage: z.string().optional().describe('OpenTelemetry baggage of the session.').meta(noEffect('no tracing here')),
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
  /** feature.hostname: the program sees the target's host name. */
  hostname: boolean;
  /** feature.copy_target; absent when off. */
  copy_target?: z.output<typeof copyTargetObject>;
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
      hostname: false,
    };
  }
  return {
    outgoing: f?.network?.outgoing ?? outgoingObject.parse({}),
    dns: f?.network?.dns ?? dnsObject.parse({}),
    incoming: f?.network?.incoming ?? incomingObject.parse({}),
    fs: f?.fs ?? fsObject.parse({}),
    env: f?.env ?? {},
    hostname: f?.hostname ?? true,
    ...(f?.copy_target?.enabled ? { copy_target: f.copy_target } : {}),
  };
}

/** skip_processes, with mirrord's build tools (and skip_extra_build_tools) when skip_build_tools is on. */
export function skippedProcesses(cfg: MirrordConfig): string[] | undefined {
  const list = [...(cfg.skip_processes ?? []), ...(cfg.skip_build_tools ? [...BUILD_TOOLS, ...(cfg.skip_extra_build_tools ?? [])] : [])];
  return list.length ? [...new Set(list)] : undefined;
}

export function jsonSchema(): object {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
