import type { MirrordConfig } from '../config/schema.js';
import { sessionSettings } from '../session/from-config.js';

/**
 * A service's session settings: the one shared sessionSettings() of its config (features, agent,
 * kube, skip_processes, key, internal_proxy / external_proxy, use_proxy), with `mirrord up`'s labels
 * added to the agent's, so that every run of a service (exec, container, compose) gets the same.
 */
export function upSessionSettings(config: MirrordConfig, labels: Record<string, string>): ReturnType<typeof sessionSettings> {
  const settings = sessionSettings(config);
  return { ...settings, agent: { ...settings.agent, labels: { ...settings.agent.labels, ...labels } } };
}
