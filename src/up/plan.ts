import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { escapeRegex } from '../../common/regex.js';
import { ConfigError, validateConfig } from '../config/load.js';
import type { MirrordConfig } from '../config/schema.js';
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
  run: UpService['run'];
}

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
  const planned = chosen.map((name) => planService(name, file.services[name]!, file, opts));
  refuseSharedSteal(planned);
  return planned;
}

function planService(name: string, s: UpService, file: UpFile, opts: PlanOptions): PlannedService {
  const mode = opts.mode ?? s.default_mode ?? 'split';
  const context = opts.context ?? s.context ?? file.common?.context;
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
  const raw = {
    target: target ? (target.kind === 'targetless' ? 'targetless' : { path: text, namespace }) : undefined,
    kube_context: context,
    feature: { env: s.env, network: { incoming } },
  };
  try {
    return { name, config: validateConfig(raw), target, namespace, mode, run: s.run };
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

/**
 * Two services of one up stealing the same target would fight over its ports: the first rule wins
 * on the agent. Concurrent filtered steal (one agent, a filter per session) is not there yet.
 */
function refuseSharedSteal(services: PlannedService[]): void {
  const byTarget = new Map<string, string[]>();
  for (const s of services) {
    if (s.mode === 'mirror' || !s.target || s.target.kind === 'targetless') continue;
    const k = formatTarget(s.target);
    byTarget.set(k, [...(byTarget.get(k) ?? []), s.name]);
  }
  for (const [target, names] of byTarget) {
    if (names.length > 1) {
      throw new MirrordError(
        `services ${names.join(' and ')} both steal from ${target}: two sessions stealing one target need concurrent filtered steal (one shared agent), which mirrord does not have yet`,
        ExitCode.Usage,
        'Give one of them default_mode: mirror, or another target',
      );
    }
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
