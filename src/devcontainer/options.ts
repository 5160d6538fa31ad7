import type { ExecFlags } from '../config/flags.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { PreloadMode } from './state.js';
import { targetFrom } from '../target.js';

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

/**
 * The dev container's target. A config without one is targetless elsewhere (as in mirrord), but a
 * dev container started without the feature's target option has not been pointed anywhere: say so
 * and run without a session (`target: targetless` asks for one explicitly).
 */
export function devcontainerTarget(config: Parameters<typeof targetFrom>[0], raw: unknown, namespace?: string): ReturnType<typeof targetFrom> {
  // What the file and flags gave: loadConfig fills a missing target in as targetless.
  const t = (raw as { target?: unknown } | undefined)?.target;
  const none = t === undefined || t === '' || (typeof t === 'object' && t !== null && Object.keys(t).every((k) => k === 'namespace'));
  if (none) {
    throw new MirrordError(
      'no target given',
      ExitCode.Usage,
      'Set the feature\'s target option, or "target" in the config file (targetless: "target": "targetless")',
    );
  }
  return targetFrom(config, namespace);
}
