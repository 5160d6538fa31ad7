import path from 'node:path';
import type { ConfigOverrides } from './load.js';

/** The exec/container flags that stand for config keys. */
export interface ExecFlags {
  target?: string;
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  configFile?: string;
  steal?: boolean;
  fsMode?: string;
  outgoing?: boolean; // commander's --no-outgoing
  remoteDns?: boolean; // --no-remote-dns
  includeEnv?: string;
  excludeEnv?: string;
  envFile?: string;
}

/** Flags win over the file; they are applied before validation so they are checked the same way. */
export function flagOverrides(f: ExecFlags): ConfigOverrides {
  const o: ConfigOverrides = [];
  if (f.target) o.push({ path: ['target'], value: f.target });
  if (f.context) o.push({ path: ['kube_context'], value: f.context });
  if (f.kubeconfig) o.push({ path: ['kubeconfig'], value: path.resolve(f.kubeconfig) });
  if (f.steal) o.push({ path: ['feature', 'network', 'incoming', 'mode'], value: 'steal' });
  if (f.fsMode) o.push({ path: ['feature', 'fs', 'mode'], value: f.fsMode });
  if (f.outgoing === false) {
    o.push({ path: ['feature', 'network', 'outgoing', 'tcp'], value: false });
    o.push({ path: ['feature', 'network', 'outgoing', 'udp'], value: false });
  }
  if (f.remoteDns === false) o.push({ path: ['feature', 'network', 'dns', 'enabled'], value: false });
  if (f.includeEnv) o.push({ path: ['feature', 'env', 'include'], value: f.includeEnv });
  if (f.excludeEnv) o.push({ path: ['feature', 'env', 'exclude'], value: f.excludeEnv });
  if (f.envFile) o.push({ path: ['feature', 'env', 'env_file'], value: path.resolve(f.envFile) });
  return o;
}
