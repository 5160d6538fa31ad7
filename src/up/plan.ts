import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { escapeRegex } from '../../common/regex.js';
import { ConfigError, validateConfig } from '../config/load.js';
import { resolveFeatures, type MirrordConfig } from '../config/schema.js';
import { DockerPlatform } from '../platforms/docker/platform.js';
import { platformFor } from '../session/session.js';
import { formatTarget, parseTarget, type TargetSpec } from '../target.js';
import type { UpFile, UpService } from './file.js';

export type UpMode = 'split' | 'replace' | 'mirror';

/** One service as it will run: its own mirrord config, target and command. */
export interface PlannedService {
  name: string;
  config: MirrordConfig;
  /** Undefined until inferred (a service without `target`, or with only `{namespace}`). */
  target?: TargetSpec;
  /** The namespace inference looks in (`target: {namespace}`). */
  namespace?: string;
  mode: UpMode;
  /** How it runs: a program or a container of the up file, or a service of the compose project. */
  run: UpService['run'] | { type: 'compose' };
}

/** What a service says about its session, in an up file or in a compose file's x-mirrord. */
export type ServiceSettings = Pick<UpService, 'target' | 'env' | 'default_mode' | 'http_filter' | 'ignore_ports' | 'context'> & {
  /** A mirrord config fragment (x-mirrord's config), below the keys above. */
  config?: Record<string, unknown>;
};

export interface PlanOptions {
  key: string;
  mode?: UpMode;
  context?: string;
  /** Services named on the command line (empty: every service not skipped). */
  only: string[];
}

/** Which services run, each with its config; the names given must exist. */
export function planServices(file: UpFile, opts: PlanOptions): PlannedService[] {
  const names = Object.keys(file.services);
  for (const n of opts.only) {
    if (!file.services[n]) {
      throw new MirrordError(`no service named ${n} in the up file`, ExitCode.Usage, `Its services: ${names.join(', ') || '(none)'}`);
    }
  }
  const chosen = opts.only.length ? names.filter((n) => opts.only.includes(n)) : names.filter((n) => !file.services[n]!.skip);
  if (chosen.length === 0) throw new MirrordError('every service of the up file is skipped', ExitCode.Usage, 'Name the services to run: mirrord up SERVICE...');
  const planned = chosen.map((name) => {
    const svc = file.services[name]!;
    return { ...planService(name, svc, file.common?.context, opts), run: svc.run };
  });
  refuseSharedSteal(planned);
  return planned;
}

/** One service's mirrord config, target and mode (the caller says how it runs). */
export function planService(name: string, s: ServiceSettings, commonContext: string | undefined, opts: Omit<PlanOptions, 'only'>): Omit<PlannedService, 'run'> {
  const mode = opts.mode ?? s.default_mode ?? 'split';
  const context = opts.context ?? s.context ?? commonContext;
  const t = s.target;
  const text = typeof t === 'string' ? t : t?.path;
  const namespace = typeof t === 'object' ? t.namespace : undefined;
  const target = text === 'none' || text === 'targetless' ? parseTarget('targetless', namespace) : text ? parseTarget(text, namespace) : undefined;
  const incoming =
    mode === 'mirror'
      ? { mode: 'mirror', ignore_ports: s.ignore_ports }
      : {
          mode: 'steal',
          ignore_ports: s.ignore_ports,
          // split without a filter: the session key in the baggage header, as mirrord's up does.
          http_filter:
            mode === 'split' ? (s.http_filter ?? { header_filter: `^baggage: (.*[,;] *)?mirrord-session=${escapeRegex(opts.key)}( *[,;].*)?$` }) : undefined,
        };
  const raw = mergeConfig(s.config ?? {}, {
    target: target ? (target.kind === 'targetless' ? 'targetless' : { path: text, namespace }) : undefined,
    kube_context: context,
    feature: { env: s.env, network: { incoming } },
  });
  try {
    return { name, config: validateConfig(raw), target, namespace, mode };
  } catch (err) {
    if (err instanceof ConfigError) {
      const where = (p: string) => p.replace(/^feature\.network\.incoming\./, '').replace(/^feature\./, '');
      throw new MirrordError(
        `services.${name}: ${err.problems.map((p) => `${where(p.path)}: ${p.message}`).join('; ')}`,
        ExitCode.Config,
        'Fix the service in the up file (docs/up.md)',
      );
    }
    throw err;
  }
}

/** `over` merged into `base`, key by key into objects; an undefined value in `over` keeps `base`'s. */
export function mergeConfig(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] = isPlain(v) && isPlain(b) ? mergeConfig(b, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Services of one up stealing the same target share its agent (agent.shared): the agent sends each
 * request to the session whose HTTP filter matches, and the rest to the target's own app. That needs
 * a filter per service, all different; an unfiltered steal, two equal filters (split mode's default
 * is the same session key for every service) or an ephemeral Kubernetes agent (it cannot be shared)
 * would fight over the port, so they are refused before anything starts.
 */
export function refuseSharedSteal(services: Array<Omit<PlannedService, 'run'>>): void {
  const byTarget = new Map<string, Array<Omit<PlannedService, 'run'>>>();
  for (const s of services) {
    if (s.mode === 'mirror' || !s.target || s.target.kind === 'targetless') continue;
    const k = formatTarget(s.target);
    byTarget.set(k, [...(byTarget.get(k) ?? []), s]);
  }
  for (const [target, group] of byTarget) {
    if (group.length < 2) continue;
    const names = group.map((s) => s.name).join(' and ');
    const refuse = (why: string, hint: string) => {
      throw new MirrordError(`services ${names} both steal from ${target}, ${why}`, ExitCode.Usage, hint);
    };
    const filters = group.map((s) => {
      const f = resolveFeatures(s.config).incoming.http_filter;
      return f && Object.keys(f).some((k) => k !== 'ports') ? JSON.stringify(f) : undefined;
    });
    const unfiltered = group.filter((_, i) => filters[i] === undefined).map((s) => s.name);
    if (unfiltered.length)
      refuse(
        `and ${unfiltered.join(', ')} without an HTTP filter`,
        'Give each of them its own http_filter, or one of them default_mode: mirror, or another target',
      );
    if (new Set(filters).size < filters.length) {
      refuse('with the same HTTP filter', "Give each of them its own http_filter (split mode's default filter is the same session key for every service)");
    }
    const ephemeral = group.filter((s) => s.config.agent.ephemeral).map((s) => s.name);
    if (ephemeral.length) refuse(`and ${ephemeral.join(', ')} uses an ephemeral agent, which cannot be shared`, 'Remove agent.ephemeral from those services');
    for (const s of group) s.config.agent.shared = true;
  }
}

/**
 * A service without `target` is named for it: a Deployment, then a StatefulSet, a Rollout, a Pod of
 * that name (when a cluster is configured), then a Docker container of that name.
 */
export async function inferTarget(s: PlannedService, log: Logger): Promise<TargetSpec> {
  const tried: string[] = [];
  const kubeconfig = s.config.kubeconfig ?? process.env.KUBECONFIG ?? path.join(os.homedir(), '.kube/config');
  if (process.env.KUBERNETES_SERVICE_HOST || kubeconfig.split(':').some((f) => f && existsSync(f))) {
    for (const kind of ['deployment', 'statefulset', 'rollout', 'pod'] as const) {
      const spec: TargetSpec = { kind, name: s.name, namespace: s.namespace };
      tried.push(formatTarget(spec));
      try {
        const platform = await platformFor(spec, { agent: s.config.agent, kube: { kubeconfig: s.config.kubeconfig, context: s.config.kube_context } });
        await platform.resolveTarget(spec);
        log.debug(`service ${s.name}: target ${formatTarget(spec)}`);
        return spec;
      } catch (err) {
        if (!(err instanceof MirrordError) || err.code !== ExitCode.Target) throw err;
      }
    }
  }
  const docker: TargetSpec = { kind: 'docker', container: s.name };
  tried.push(formatTarget(docker));
  try {
    await new DockerPlatform().resolveTarget(docker);
    return docker;
  } catch (err) {
    if (!(err instanceof MirrordError) || err.code !== ExitCode.Target) throw err;
  }
  throw new MirrordError(
    `service ${s.name} has no target, and none is named ${s.name} (tried ${tried.join(', ')})`,
    ExitCode.Target,
    'Set services.NAME.target in the up file',
  );
}
