import type { ExecFlags } from '../config/flags.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { PreloadMode } from './state.js';

/** `mirrord devcontainer start` (and the daemon it starts): the exec flags that name config keys, plus these. */
export interface DevcontainerFlags extends Pick<ExecFlags, 'target' | 'namespace' | 'context' | 'kubeconfig' | 'configFile'> {
  /** all | shell | none (the feature's `preload` option). */
  preload?: string;
  /** ';'-separated programs the layer leaves alone, over the config's skip_processes. */
  skip?: string;
  /** The name of an environment variable holding a kubeconfig, base64 (a Codespaces secret). */
  kubeconfigSecret?: string;
  /** Seconds start waits for the session to be live. */
  timeout?: string;
}

/** IDE servers and daemons: their own connections must stay the dev container's. Path parts hold a '/'. */
export const DEFAULT_SKIP = [
  '/.vscode-server/',
  '/.vscode-server-insiders/',
  '/.vscode-remote/',
  '/.cursor-server/',
  '/JetBrains/RemoteDev/',
  'dockerd',
  'containerd',
  'containerd-shim-runc-v2',
  'sshd',
];

export function preloadMode(f: DevcontainerFlags): PreloadMode {
  const m = f.preload ?? 'all';
  if (m === 'all' || m === 'shell' || m === 'none') return m;
  throw new MirrordError(`--preload ${m}: expected all, shell or none`, ExitCode.Usage);
}

/** The daemon's command line: the same settings, as flags. */
export function daemonArgs(f: DevcontainerFlags): string[] {
  const a: string[] = ['devcontainer', 'daemon'];
  const add = (flag: string, v: string | undefined) => void (v !== undefined && a.push(flag, v));
  add('--target', f.target);
  add('--namespace', f.namespace);
  add('--context', f.context);
  add('--kubeconfig', f.kubeconfig);
  add('--config-file', f.configFile);
  add('--preload', f.preload);
  add('--skip', f.skip);
  return a;
}
