/**
 * Getting the agent image into a cluster that cannot pull it (docs/images.md, "The agent image in a
 * cluster"): a local cluster is recognised from the kube context that kind, k3d, minikube and
 * Docker Desktop write, and each has its own way to load an image from this machine's engine. A
 * load hook (MIRRORD_IMAGE_LOAD, a command the image names are appended to) stands for any other
 * cluster, and wins over detection.
 */

export type LocalClusterKind = 'kind' | 'k3d' | 'minikube' | 'docker-desktop';

export interface LocalCluster {
  kind: LocalClusterKind;
  /** The cluster's own name (kind/k3d cluster, minikube profile). */
  name: string;
}

/** What the kube context says, as @kubernetes/client-node reads it. */
export interface ContextShape {
  context: string;
  cluster?: string;
  server?: string;
  user?: string;
  /** minikube writes `extensions: [{name: context_info|cluster_info, extension: {provider: minikube.sigs.k8s.io}}]`. */
  extensions?: Array<{ name?: string; extension?: { provider?: string } }>;
}

export const LOAD_HOOK_ENV = 'MIRRORD_IMAGE_LOAD';

/** The local cluster a kube context belongs to, or undefined for any other (remote) cluster. */
export function detectLocalCluster(c: ContextShape): LocalCluster | undefined {
  const cluster = c.cluster ?? c.context;
  // kind names everything kind-NAME (context, cluster and user).
  let m = /^kind-(.+)$/.exec(c.context) ?? /^kind-(.+)$/.exec(cluster);
  if (m) return { kind: 'kind', name: m[1]! };
  m = /^k3d-(.+)$/.exec(c.context) ?? /^k3d-(.+)$/.exec(cluster);
  if (m) return { kind: 'k3d', name: m[1]! };
  if (c.extensions?.some((e) => e.extension?.provider === 'minikube.sigs.k8s.io') || c.context === 'minikube') {
    return { kind: 'minikube', name: cluster };
  }
  if (c.context === 'docker-desktop' || c.context === 'docker-for-desktop' || c.cluster === 'docker-desktop')
    return { kind: 'docker-desktop', name: 'docker-desktop' };
  return undefined;
}

/**
 * The command that loads `images` (names in this machine's engine) into the cluster: argv, or
 * undefined when the cluster already shares the engine's images (Docker Desktop).
 */
export function loadCommand(c: LocalCluster, images: string[]): string[] | undefined {
  switch (c.kind) {
    case 'kind':
      return ['kind', 'load', 'docker-image', '--name', c.name, ...images];
    case 'k3d':
      return ['k3d', 'image', 'import', '-c', c.name, ...images];
    case 'minikube':
      return ['minikube', 'image', 'load', '-p', c.name, ...images];
    case 'docker-desktop':
      return undefined;
  }
}

/** The hook's command line (run by sh, the images as its arguments), or undefined. */
export function loadHook(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const h = env[LOAD_HOOK_ENV]?.trim();
  return h || undefined;
}

/** A command line for messages: each word quoted when it needs it. */
export function shellLine(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The current context of a loaded kubeconfig (@kubernetes/client-node's KubeConfig) as a ContextShape. */
export function contextShapeOf(kc: {
  getCurrentContext(): string;
  getContextObject(name: string): { cluster: string; user: string } | null;
  getCluster(name: string): { server: string } | null;
}): ContextShape | undefined {
  const name = kc.getCurrentContext();
  const ctx = name ? kc.getContextObject(name) : null;
  if (!ctx) return undefined;
  return { context: name, cluster: ctx.cluster, user: ctx.user, server: kc.getCluster(ctx.cluster)?.server };
}
