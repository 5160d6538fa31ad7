/**
 * The agent keys of the session's config (agent.json_log, communication_timeout, flush_connections,
 * metrics, nftables, dns, disabled_capabilities) as the CLI hands them to the agent: environment
 * variables (src/config/agent-schema.ts, agentKeysEnv), the same on Docker and Kubernetes, and
 * inherited by every process the agent starts (the listener's children, its guard).
 */

export interface AgentSettings {
  /** agent.json_log: every log line is one JSON object. */
  jsonLog: boolean;
  /** agent.communication_timeout: the client is dropped after this much silence (default: the link's own). */
  communicationTimeoutMs?: number;
  /** agent.flush_connections: established connections to a port are flushed when stealing it starts. */
  flushConnections: boolean;
  /** agent.metrics: where the Prometheus endpoint listens. */
  metrics?: { host: string; port: number };
  /** agent.nftables: true iptables-nft, false iptables-legacy, unset detect. */
  nftables?: boolean;
  /** agent.dns: the resolver's timeout per query and attempts (default: the target's resolv.conf). */
  dnsTimeoutMs?: number;
  dnsAttempts?: number;
  /** agent.disabled_capabilities, upper case without CAP_: what fails for want of one says so. */
  disabledCapabilities: string[];
  /** agent.max_body_buffer_size / max_body_buffer_timeout: how much of a body, and how long, a body filter waits for. */
  maxBodyBytes?: number;
  maxBodyWaitMs?: number;
}

export const SETTINGS_ENV = {
  jsonLog: 'MIRRORD_AGENT_JSON_LOG',
  communicationTimeout: 'MIRRORD_AGENT_COMMUNICATION_TIMEOUT',
  flushConnections: 'MIRRORD_AGENT_FLUSH_CONNECTIONS',
  metrics: 'MIRRORD_AGENT_METRICS',
  nftables: 'MIRRORD_AGENT_NFTABLES',
  dnsTimeout: 'MIRRORD_AGENT_DNS_TIMEOUT',
  dnsAttempts: 'MIRRORD_AGENT_DNS_ATTEMPTS',
  disabledCapabilities: 'MIRRORD_AGENT_DISABLED_CAPABILITIES',
  maxBodyBufferSize: 'MIRRORD_AGENT_MAX_BODY_BUFFER_SIZE',
  maxBodyBufferTimeout: 'MIRRORD_AGENT_MAX_BODY_BUFFER_TIMEOUT',
} as const;

export class SettingsError extends Error {}

/** `host:port`, `[v6]:port` or a bare port (all addresses). */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim()) ?? /^()()(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SettingsError(`agent.metrics must be an address such as 0.0.0.0:9000, got ${JSON.stringify(text)}`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function normalCapability(c: string): string {
  return c.trim().toUpperCase().replace(/^CAP_/, '');
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): AgentSettings {
  const flag = (name: string): boolean | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (v === '1' || v === 'true') return true;
    if (v === '0' || v === 'false') return false;
    throw new SettingsError(`${name} must be 1 or 0, got ${JSON.stringify(v)}`);
  };
  const whole = (name: string, min: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new SettingsError(`${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const timeout = whole(SETTINGS_ENV.communicationTimeout, 1);
  const dnsTimeout = whole(SETTINGS_ENV.dnsTimeout, 1);
  const metrics = env[SETTINGS_ENV.metrics];
  return {
    jsonLog: flag(SETTINGS_ENV.jsonLog) ?? false,
    communicationTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
    // mirrord flushes by default.
    flushConnections: flag(SETTINGS_ENV.flushConnections) ?? true,
    metrics: metrics ? parseListenAddress(metrics) : undefined,
    nftables: flag(SETTINGS_ENV.nftables),
    dnsTimeoutMs: dnsTimeout === undefined ? undefined : dnsTimeout * 1000,
    dnsAttempts: whole(SETTINGS_ENV.dnsAttempts, 1),
    disabledCapabilities: (env[SETTINGS_ENV.disabledCapabilities] ?? '').split(',').map(normalCapability).filter(Boolean),
    maxBodyBytes: whole(SETTINGS_ENV.maxBodyBufferSize, 0),
    maxBodyWaitMs: whole(SETTINGS_ENV.maxBodyBufferTimeout, 0),
  };
}

let current: AgentSettings | undefined;

/** This process's settings, read once (main.ts reads them first and exits 2 on a bad value). */
export function settings(): AgentSettings {
  current ??= readSettings();
  return current;
}

/** What a failure for want of `cap` should add when the config took it away. */
export function disabledHint(cap: string): string | undefined {
  return settings().disabledCapabilities.includes(cap) ? `agent.disabled_capabilities drops ${cap}, which this needs` : undefined;
}
