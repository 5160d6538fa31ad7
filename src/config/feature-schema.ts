import { z } from 'zod';
import { anything, boolOr, port, portOrList, regexList, regexMap, regexProblem, semicolonList, stringOrList } from './shapes.js';
import { jqProblem } from './jq-check.js';
import { NEEDS_OPERATOR, differs, noEffect, refused } from './status.js';

/** `feature.*`: network (incoming, outgoing, DNS), files, environment, and mirrord's other feature keys. */

/** Accepted in any shape and always refused: paid-operator features. */
const operatorOnly = anything.superRefine((_v, ctx) => ctx.addIssue({ code: 'custom', message: NEEDS_OPERATOR }));

const trafficFilter = z
  .strictObject({
    remote: stringOrList
      .optional()
      .describe(
        'Only the matches are remote (connected or resolved through the target); everything else stays local. A string or a list; set this or local, not both.',
      ),
    local: stringOrList.optional().describe('The matches stay local; everything else is remote. A string or a list; set this or remote, not both.'),
  })
  .refine((f) => !(f.remote && f.local), { message: 'set either remote or local, not both' });

/** mirrord's JSON body filter: a JSONPath query and a regex for the values it selects. */
const bodyFilter = z.strictObject({
  body: z.literal('json', { error: 'body must be "json" (the only body filter mirrord has)' }).describe('"json": the body is parsed as JSON.'),
  query: z.string().min(1).describe('JSONPath (RFC 9535) into the parsed JSON body.'),
  matches: z.string().describe('Regex each selected value (strings as they are, other values as JSON) is tested against; one match is enough.'),
});

/**
 * mirrord's jq header filters: an expression run on each request header ("name: value", the name in
 * lower case) by the agent's jq engine; compiled when the config is read (a bad one is refused).
 */
const jqExpression = z
  .string()
  .min(1, 'a jq expression cannot be empty')
  .superRefine((expr, ctx) => {
    const problem = expr ? jqProblem(expr) : undefined;
    if (problem) ctx.addIssue({ code: 'custom', message: `not a valid jq expression: ${problem}` });
  });

/** An item of all_of / any_of: mirrord's four shapes, and (ours) nested all_of / any_of. */
export type InnerHttpFilter =
  | { header: string }
  | { path: string }
  | { method: string }
  | { body: 'json'; query: string; matches: string }
  | { query: string }
  | { all_of: InnerHttpFilter[] }
  | { any_of: InnerHttpFilter[] };
const innerFilter: z.ZodType<InnerHttpFilter> = z.lazy(() =>
  z.union([
    z.strictObject({ header: z.string() }),
    z.strictObject({ path: z.string() }),
    z.strictObject({ method: z.string() }),
    bodyFilter,
    // mirrord's {"query": jq} item: a jq header filter.
    z.strictObject({ query: jqExpression }),
    z.strictObject({ all_of: z.array(innerFilter).min(1, 'a nested all_of cannot be empty') }),
    z.strictObject({ any_of: z.array(innerFilter).min(1, 'a nested any_of cannot be empty') }),
  ]),
);

const httpFilter = z.strictObject({
  header_filter: z
    .string()
    .optional()
    .describe('Regex (case-insensitive) matched against each request header written as "Name: value"; every filter that is set must match.'),
  path_filter: z.string().optional().describe('Regex (case-insensitive) matched against the request path, with and without its query.'),
  method_filter: z.string().optional().describe('Regex (case-insensitive) matched against the request method.'),
  ports: portOrList.optional().describe('Ports the HTTP filter applies to (default: all stolen ports), a port or a list; other stolen ports are stolen whole.'),
  all_of: z
    .array(innerFilter)
    .optional()
    .describe(
      'mirrord: filters that must all match, each {"header": regex}, {"path": regex}, {"method": regex}, {"body": "json", "query": JSONPath, "matches": regex}, {"query": jq} (as header_filter_jq), or (here) a nested {"all_of": [...]} / {"any_of": [...]}. An empty list is no filter.',
    ),
  any_of: z
    .array(innerFilter)
    .optional()
    .describe('mirrord: filters of which at least one must match, in the shapes all_of takes. An empty list is no filter.'),
  body_filter: bodyFilter
    .optional()
    .describe(
      'mirrord: {"body": "json", "query": JSONPath (RFC 9535, with typeof()), "matches": regex}: matches when some value the query selects in the JSON body, as a string, matches. Bodies over 64 KiB, slower than 2 s or not JSON do not match.',
    ),
  header_filter_jq: jqExpression
    .optional()
    .describe(
      'mirrord: a jq expression run on each request header, its input the string "name: value" (name in lower case); the request matches when, for some header, the first boolean it outputs is true (other outputs are skipped, an error is no match). Checked when the config is read; one run longer than agent.jaq_time_limit is cut and does not match.',
    )
    .meta(
      differs(
        "jq 1.7 (jq-web's WebAssembly build) rather than mirrord's jaq, so the few functions the two dialects name differently follow jq; one run takes all of a request's headers at once (agent.jaq_time_limit bounds that run)",
      ),
    ),
});

const incomingMode = z.enum(['mirror', 'steal', 'off']);

const tlsDelivery = anything.optional().meta(noEffect('stolen TLS is delivered to the local program as it arrives (no re-encryption)'));

const incomingObject = z.strictObject({
  mode: incomingMode.default('mirror').describe('mirror: copy incoming traffic to the local program; steal: take it; off: neither.'),
  ports: z.array(port).optional().describe('Only these remote ports are subscribed (default: all).'),
  ignore_ports: z.array(port).default([]).describe('Local listening ports that are never subscribed.'),
  port_mapping: z
    .array(z.tuple([port, port]))
    .default([])
    .describe("[[local, remote], ...]: a local listener on port local receives the target's port remote."),
  http_filter: boolOr(httpFilter, {})
    .optional()
    .describe(
      'Only the HTTP requests that match go to the local program: stolen (the others go to the real application) or, in mirror mode, copied. Every key that is set must match. true or false is no filter.',
    ),
  ignore_localhost: z
    .boolean()
    .default(false)
    .describe(
      'Local listeners bound to a loopback address (127.0.0.0/8, ::1, ::ffff:127.x) receive no remote traffic: they are not subscribed. Listeners on any other address (0.0.0.0, ::, an interface) are.',
    ),
  listen_ports: z
    .array(z.tuple([port, port]))
    .optional()
    .describe(
      "[[asked, used], ...]: a program's bind of port asked really binds local port used (so it can be reached there, e.g. 80 as 18080 without root); the target's port asked is still the one subscribed, and getsockname reports asked. If used cannot be bound, bind fails (EADDRINUSE), as in mirrord.",
    ),
  on_concurrent_steal: z
    .enum(['abort', 'continue', 'override'])
    .default('abort')
    .describe(
      'An unfiltered steal of a port that another session of the same agent steals: abort refuses with a line naming that session; continue shares the port (this session gets the requests no filter takes); override takes the port while this session holds it.',
    ),
  tls_delivery: tlsDelivery.describe('mirrord: how stolen TLS is delivered to the local program.'),
  https_delivery: tlsDelivery.describe('mirrord: older name of tls_delivery.'),
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
  unix_streams: stringOrList
    .superRefine((list, ctx) => {
      for (const src of list) {
        const problem = regexProblem(src);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }
    })
    .optional()
    .describe(
      'Regexes (a string or a list), searched anywhere in the path a unix stream socket connects to (anchor them for whole paths): a match reaches the socket of that path inside the target (its file system), through the agent; other paths stay local.',
    )
    .meta(
      differs(
        "absolute paths only (a relative or abstract address stays local); ancillary data (SCM_RIGHTS, credentials) does not cross; getpeername reports the asked path. A local container (mirrord container, mirrord up) reaches the listeners through the sidecar's /mirrord volume",
      ),
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
/** mirrord's default read buffer and its upper limit (a larger value is refused, as mirrord does). */
export const READONLY_FILE_BUFFER_MAX = 15 * 1024 * 1024;
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
  mapping: regexMap
    .optional()
    .describe(
      '{regex: replacement}: a path the program asks for that matches (case-insensitive) is replaced before the rules above decide, the first match only; the replacement may use $1, ${name} and $name. Example: {"^/home/[^/]+/dev/config": "/etc/app"}.',
    )
    .meta(differs('a replaced path that the rules make local is opened at its original path; mirrord may open the replaced one')),
  readonly_file_buffer: z
    .number()
    .int()
    .min(0)
    .max(READONLY_FILE_BUFFER_MAX)
    .optional()
    .describe(
      'Bytes read ahead from the target per request on files read sequentially; 0 reads exactly what the program asks. Default 524288 (512 KiB); at most 15 MiB.',
    )
    .meta(differs('default 512 KiB (mirrord: 128000 bytes), measured in bench/files.ts; it applies to every remote file, not only read-only ones')),
});

const envObject = z.strictObject({
  include: semicolonList.optional().describe('Only remote variables matching these patterns are merged (default: all). "A;B_*" or a list; * and ? wildcards.'),
  exclude: semicolonList.optional().describe('Remote variables matching these patterns are dropped ("A;B_*" or a list).'),
  override: z.record(z.string(), z.string()).optional().describe('{NAME: value}, set last, over local and remote values, env_file and mapping.'),
  env_file: z.string().optional().describe('A dotenv file applied over the remote environment.'),
  mapping: regexMap
    .optional()
    .describe(
      '{regex: value}: a variable taken from the target or env_file whose name matches the regex (anywhere in the name unless anchored) gets that value instead; the first matching entry wins.',
    ),
  unset: semicolonList
    .optional()
    .describe("Variables removed from the program's environment, whatever their source (names, any case: AWS_PROFILE also removes Aws_Profile)."),
  load_from_process: z
    .boolean()
    .optional()
    .describe(
      'mirrord: fetch the remote environment after the program started (a workaround of its IntelliJ plugin on WSL). Here: the program starts with the local environment and its layer applies the remote one (include, exclude, override, mapping and unset as usual) from the intproxy before main().',
    )
    .meta(
      differs(
        '`mirrord exec` only (containers get the environment at creation); a statically linked program, which the layer cannot reach, keeps the local environment',
      ),
    ),
});

/** mirrord's copy_target: true, or {enabled, scale_down}; a bare object without enabled is on, as in mirrord. */
const copyTargetObject = z.strictObject({
  enabled: z.boolean().default(true).describe('Target a copy instead of the original.'),
  scale_down: z
    .boolean()
    .default(false)
    .describe(
      "Kubernetes: scale the target's Deployment or StatefulSet to 0 for the session (the copy then takes all its traffic) and back to its old count after, also when the CLI is killed.",
    ),
  exclude_containers: z.array(z.string()).optional().describe('mirrord: containers left out of the copy.').meta(noEffect('every container is copied')),
  exclude_init_containers: z
    .array(z.string())
    .optional()
    .describe('mirrord: init containers left out of the copy.')
    .meta(noEffect('every init container is copied')),
});
const copyTarget = z.preprocess((v) => (typeof v === 'boolean' ? { enabled: v } : v), copyTargetObject);

export const featureSchema = z
  .strictObject({
    network: boolOr(
      z
        .strictObject({
          incoming: z
            .preprocess((v) => (typeof v === 'string' ? { mode: v } : v === false ? { mode: 'off' } : v === true ? {} : v), incomingObject)
            .optional()
            .describe('The target\'s incoming traffic. The section may be just the mode string ("incoming": "steal"), true (mirror) or false (off).'),
          outgoing: boolOr(outgoingObject, { tcp: false, udp: false })
            .optional()
            .describe('Outgoing connections. false is shorthand for {tcp: false, udp: false}.'),
          dns: boolOr(dnsObject, { enabled: false }).optional().describe('Host name resolution. false is shorthand for {enabled: false}.'),
          ipv6: z.boolean().optional().describe('mirrord: IPv6 support.').meta(noEffect('IPv6 sockets are always handled like IPv4 ones')),
        })
        .optional(),
      { incoming: { mode: 'off' }, outgoing: { tcp: false, udp: false }, dns: { enabled: false } },
    )
      .optional()
      .describe('Network features: incoming, outgoing, DNS. false turns all three off.'),
    fs: z
      .preprocess((v) => (typeof v === 'string' ? { mode: v } : v === false ? { mode: 'local' } : v === true ? {} : v), fsObject)
      .optional()
      .describe('Remote files. The section may be just the mode string ("fs": "write"), true (read) or false (local).'),
    env: boolOr(envObject, { include: [] }).optional().describe('The remote environment. false is shorthand for {include: []}: no remote variable.'),
    hostname: z
      .boolean()
      .default(true)
      .describe(
        "The program sees the target's host name: mirrord container runs the local container under it; mirrord exec gives the program MIRRORD_HOSTNAME, which the layer reports from gethostname and uname. false keeps the local host name.",
      )
      .meta(
        differs(
          "exec: through MIRRORD_HOSTNAME and the layer (a statically linked program keeps the local name); container: the container's own host name, so every process in it sees it",
        ),
      ),
    copy_target: copyTarget
      .optional()
      .describe(
        "Run the session against a copy of the target: true or {enabled: true}. Kubernetes: a new pod from the target pod's spec, without probes and with its labels replaced (no Service selects it unless scale_down), deleted at the end. Docker: a new container with the same image, command, env, mounts, networks and aliases; the original is untouched.",
      )
      .meta(
        differs(
          'Docker targets too; on Kubernetes the copy keeps the original labels only with scale_down (mirrord: always), and a CLI killed with SIGKILL is cleaned up by a detached watchdog on this machine (mirrord: the operator)',
        ),
      ),
    magic: z
      .strictObject({
        aws: z.boolean().optional().describe('mirrord: unset local AWS variables.'),
        turbo: z.boolean().optional().describe('mirrord: skip some of its own work.'),
        auto_mount: z.boolean().optional().describe("mirrord: mount the target's volumes remotely."),
      })
      .optional()
      .describe("mirrord's automatic conveniences.")
      .meta(noEffect('no such conveniences here: use feature.env.unset for AWS variables; mount points of the target are remote by default')),
    split_queues: operatorOnly.optional().describe('mirrord: queue splitting.').meta(refused(NEEDS_OPERATOR)),
    db_branches: operatorOnly.optional().describe('mirrord: database branches.').meta(refused(NEEDS_OPERATOR)),
    preview: operatorOnly.optional().describe('mirrord: preview environments.').meta(refused(NEEDS_OPERATOR)),
  })
  .optional()
  .describe('What of the target the program gets: network, files, environment.');

export { copyTargetObject, dnsObject, envObject, fsObject, incomingObject, outgoingObject };
