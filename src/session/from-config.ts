import { resolveFeatures, skippedProcesses, type MirrordConfig } from '../config/schema.js';
import type { SessionOptions } from './session.js';

/** The parts of a session every command takes from the loaded config in the same way. */
export function sessionSettings(config: MirrordConfig): Pick<SessionOptions<unknown>, 'features' | 'agent' | 'kube' | 'skipProcesses' | 'proxies'> {
  return {
    features: resolveFeatures(config),
    agent: config.agent,
    kube: { kubeconfig: config.kubeconfig, context: config.kube_context, acceptInvalidCertificates: config.accept_invalid_certificates },
    skipProcesses: skippedProcesses(config),
    proxies: { internal: config.internal_proxy, external: config.external_proxy },
  };
}
