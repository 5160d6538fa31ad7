import { resolveFeatures, skippedProcesses, type MirrordConfig } from '../config/schema.js';
import type { SessionOptions } from './session.js';

/** The parts of a session every command takes from the loaded config in the same way. */
/** The proxy variables use_proxy: false removes (both spellings, as curl and most clients read both). */
export const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'];

/**
 * use_proxy: false, as mirrord: the proxy variables are removed from this process before any
 * request, so the program does not inherit them either (a value in the target's environment still
 * reaches it).
 */
export function applyUseProxy(config: MirrordConfig, env: NodeJS.ProcessEnv = process.env): void {
  if (config.use_proxy === false) for (const v of PROXY_VARIABLES) delete env[v];
}

export function sessionSettings(config: MirrordConfig): Pick<SessionOptions<unknown>, 'features' | 'agent' | 'kube' | 'skipProcesses' | 'proxies' | 'key'> {
  applyUseProxy(config);
  return {
    features: resolveFeatures(config),
    agent: config.agent,
    kube: { kubeconfig: config.kubeconfig, context: config.kube_context, acceptInvalidCertificates: config.accept_invalid_certificates },
    skipProcesses: skippedProcesses(config),
    key: config.key,
    proxies: { internal: config.internal_proxy, external: config.external_proxy },
  };
}
