/**
 * The cluster connection: kubeconfig and context chosen as kubectl would (flag or config key, then
 * KUBECONFIG, then ~/.kube/config), API clients, and the translation of API failures into errors
 * that say which verb on which resource was refused and what to do.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadKubeconfig } from '../../config/kubeconfig.js';
import * as k8s from '@kubernetes/client-node';
import { ExitCode, MirrordError, errnoCode } from '../../../common/errors.js';

export interface KubeSettings {
  /** A kubeconfig file; default KUBECONFIG, then ~/.kube/config. */
  kubeconfig?: string;
  context?: string;
  /** Config accept_invalid_certificates: the API server's certificate is not verified. */
  acceptInvalidCertificates?: boolean;
}

export interface Kube {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  batch: k8s.BatchV1Api;
  custom: k8s.CustomObjectsApi;
  /** The context's namespace, else `default`. */
  defaultNamespace: string;
  /** The API server URL, for messages. */
  server: string;
}

export function connectKube(s: KubeSettings = {}): Kube {
  const kc = new k8s.KubeConfig();
  try {
    if (s.kubeconfig) {
      const missing = s.kubeconfig.split(path.delimiter).find((f) => f && !existsSync(f));
      if (missing) throw new Error(`${missing} does not exist`);
      loadKubeconfig(kc, s.kubeconfig, () => new k8s.KubeConfig());
    } else {
      kc.loadFromDefault();
    }
  } catch (err) {
    throw new MirrordError(
      `cannot read the kubeconfig: ${(err as Error).message}`,
      ExitCode.Config,
      'Set KUBECONFIG or the "kubeconfig" config key to a valid kubeconfig file',
    );
  }
  if (s.context) {
    if (!kc.getContextObject(s.context)) {
      const names = kc.getContexts().map((c) => c.name);
      throw new MirrordError(`no context "${s.context}" in the kubeconfig`, ExitCode.Config, `Known contexts: ${names.join(', ') || '(none)'}`);
    }
    kc.setCurrentContext(s.context);
  }
  // accept_invalid_certificates, as kubectl's --insecure-skip-tls-verify.
  if (s.acceptInvalidCertificates) kc.clusters = kc.clusters.map((c) => (c.name === kc.getCurrentCluster()?.name ? { ...c, skipTLSVerify: true } : c));
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new MirrordError(
      'no Kubernetes cluster is configured (the kubeconfig names no current context)',
      ExitCode.Config,
      'Set KUBECONFIG, pass a kubeconfig with the "kubeconfig" config key, or use a docker/NAME target',
    );
  }
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    batch: kc.makeApiClient(k8s.BatchV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    defaultNamespace: kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default',
    server: cluster.server,
  };
}

/** What the CLI was doing when an API call failed, for the message. */
export interface ApiAction {
  verb: string;
  resource: string;
  namespace?: string;
  name?: string;
}

export function isApiStatus(err: unknown, code: number): boolean {
  return err instanceof k8s.ApiException && err.code === code;
}

function bodyMessage(err: k8s.ApiException<unknown>): string | undefined {
  const b = err.body;
  if (typeof b === 'string') {
    try {
      return (JSON.parse(b) as { message?: string }).message ?? b.slice(0, 300);
    } catch {
      return b.slice(0, 300) || undefined;
    }
  }
  return (b as { message?: string } | undefined)?.message;
}

function describe(a: ApiAction): string {
  return `${a.verb} ${a.resource}${a.name ? ` ${a.name}` : ''}${a.namespace ? ` in namespace ${a.namespace}` : ''}`;
}

/** Any failed API call as a one-line error; 404 is left to callers that expect it. */
export function apiError(err: unknown, a: ApiAction, server?: string): MirrordError {
  if (err instanceof MirrordError) return err;
  if (err instanceof k8s.ApiException) {
    const msg = bodyMessage(err);
    if (err.code === 403) {
      return new MirrordError(
        `RBAC denied: cannot ${describe(a)}${msg ? ` (${msg})` : ''}`,
        ExitCode.Platform,
        'Ask a cluster admin to bind you to the mirrord Role in templates/rbac.yaml (it lists every verb a session needs)',
        { cause: err },
      );
    }
    if (err.code === 401) {
      return new MirrordError(
        `the API server rejected the credentials while trying to ${describe(a)}`,
        ExitCode.Platform,
        'Refresh your kubeconfig credentials (log in again)',
        { cause: err },
      );
    }
    return new MirrordError(
      `cannot ${describe(a)}: HTTP ${err.code}${msg ? ` ${msg}` : ''}`,
      ExitCode.Platform,
      'Check the cluster with kubectl; run with MIRRORD_LOG=debug for details',
      { cause: err },
    );
  }
  const code = errnoCode(err) ?? errnoCode((err as { cause?: unknown })?.cause);
  const text = (err as Error)?.message ?? String(err);
  return new MirrordError(
    `the Kubernetes API${server ? ` at ${server}` : ''} is not reachable (${code ?? text})`,
    ExitCode.Platform,
    'Check that the cluster is running and KUBECONFIG/the "kubeconfig" config key point to it',
    { cause: err },
  );
}

/** Runs one API call and turns its failure into apiError; `notFound` (when given) handles 404. */
export async function call<T>(a: ApiAction, f: () => Promise<T>, server?: string, notFound?: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (notFound && isApiStatus(err, 404)) return notFound();
    throw apiError(err, a, server);
  }
}
