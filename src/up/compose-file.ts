import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { formatIssues } from '../config/load.js';
import { unescapeValues, type ComposeDoc } from '../compose/rewrite.js';
import { UP_FILE_NAMES, upServiceSchema } from './file.js';
import { mergeConfig, planService, refuseSharedSteal, type PlanOptions, type PlannedService } from './plan.js';

/**
 * A compose file's `x-mirrord` blocks (docs/up.md): the top-level one holds defaults for every
 * marked service and a mirrord config fragment; a service's is `true` or its own settings. They are
 * read from what `docker compose config` printed, so `extends`, `<<:` merges and interpolation
 * already applied; validated here with the same keys as an up file's service (without `run`).
 */
const config = z.record(z.string(), z.unknown()).describe('A mirrord config fragment (mirrord.json keys) for the service.');
const settings = upServiceSchema.omit({ run: true, skip: true }).extend({ config: config.optional() });

/** A service's x-mirrord: `true` (every default), or its own settings. */
export const xMirrordServiceSchema = settings.extend({ skip: z.boolean().default(false) });
export const xMirrordTopSchema = settings.omit({ target: true });

/** Compose's own file names, in the order it looks for them. */
export const COMPOSE_FILE_NAMES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

export type UpInput = { kind: 'up'; file: string } | { kind: 'compose'; files: string[] };

/**
 * What `mirrord up` runs: -f files (several: a compose project with overrides), else
 * mirrord-up.yaml, else Compose's own file names. A file is a compose file unless it is named like
 * an up file or its services all have `run` (an up file's required key) and none has x-mirrord.
 */
export function findUpInput(files: string[], cwd = process.cwd()): UpInput {
  if (files.length > 1) return { kind: 'compose', files: files.map((f) => path.resolve(cwd, f)) };
  if (files.length === 1) {
    const file = path.resolve(cwd, files[0]!);
    return isUpFile(file) ? { kind: 'up', file } : { kind: 'compose', files: [file] };
  }
  const up = UP_FILE_NAMES.map((n) => path.join(cwd, n)).find((p) => existsSync(p));
  if (up) return { kind: 'up', file: up };
  const compose = COMPOSE_FILE_NAMES.map((n) => path.join(cwd, n)).find((p) => existsSync(p));
  if (compose) return { kind: 'compose', files: [compose] };
  throw new MirrordError(
    `no mirrord-up.yaml or compose file in ${cwd}`,
    ExitCode.Usage,
    'Pass -f FILE, or write one with `mirrord init --up -t TARGET` (or add x-mirrord to a compose file: mirrord init --compose FILE)',
  );
}

function isUpFile(file: string): boolean {
  if (UP_FILE_NAMES.includes(path.basename(file))) return true;
  if (COMPOSE_FILE_NAMES.includes(path.basename(file))) return false;
  let doc: unknown;
  try {
    // Templates ({{ key }}) may not parse before rendering: such a file is an up file.
    doc = parse(readFileSync(file, 'utf8'));
  } catch {
    // Unreadable, or a template ({{ key }}) that only parses once rendered: the up file's loader says why.
    return true;
  }
  const d = doc as { services?: Record<string, unknown>; 'x-mirrord'?: unknown } | null;
  const services = Object.values(d?.services ?? {}) as Array<Record<string, unknown> | null>;
  if (d?.['x-mirrord'] !== undefined || services.some((s) => s?.['x-mirrord'] !== undefined)) return false;
  return services.length > 0 && services.every((s) => s?.run !== undefined);
}

export interface ComposePlan {
  doc: ComposeDoc;
  /** The services that run in a target's context, each with its session's plan. */
  marked: PlannedService[];
  /** The services `compose up` is given (empty: all of them). */
  selected: string[];
}

/**
 * The plan of a compose project: which services carry x-mirrord and run (the selected ones and
 * what they depend on; a `skip: true` one runs as plain Compose unless named), each with its config.
 */
export function planCompose(doc: ComposeDoc, opts: PlanOptions): ComposePlan {
  const names = Object.keys(doc.services ?? {});
  for (const n of opts.only) {
    if (!doc.services[n])
      throw new MirrordError(`no service named ${n} in the compose project`, ExitCode.Usage, `Its services: ${names.join(', ') || '(none)'}`);
  }
  const top = parseBlock(xMirrordTopSchema, unescapeValues(doc['x-mirrord'] ?? {}), 'x-mirrord');
  const running = opts.only.length ? withDependencies(doc, opts.only) : new Set(names);
  const marked: PlannedService[] = [];
  for (const name of names) {
    const raw = doc.services[name]!['x-mirrord'];
    if (raw === undefined || raw === false || !running.has(name)) continue;
    const own = parseBlock(xMirrordServiceSchema, raw === true ? {} : unescapeValues(raw), `services.${name}.x-mirrord`);
    if (own.skip && !opts.only.includes(name)) continue;
    const merged = {
      ...top,
      ...Object.fromEntries(Object.entries(own).filter(([, v]) => v !== undefined)),
      // The service's fragment over the project's, key by key.
      config: withLocalNames(mergeConfig(top.config ?? {}, own.config ?? {}), localNames(doc)),
    };
    marked.push({ ...planService(name, merged, undefined, opts), run: { type: 'compose' } });
  }
  refuseSharedSteal(marked);
  return { doc, marked, selected: opts.only };
}

/** The names the project's services answer to on its networks: their names, aliases and container names. */
export function localNames(doc: ComposeDoc): string[] {
  const names = new Set<string>();
  for (const [name, svc] of Object.entries(doc.services)) {
    names.add(name);
    if (typeof svc.container_name === 'string') names.add(svc.container_name);
    for (const net of Object.values((svc.networks as Record<string, { aliases?: string[] } | null> | undefined) ?? {}))
      for (const a of net?.aliases ?? []) names.add(a);
  }
  return [...names].sort();
}

/**
 * The project's own services stay local (a local redis beside a service that talks to staging):
 * their names are resolved and connected to locally, unless the config already says which names
 * go where (a dns or outgoing filter of its own).
 */
function withLocalNames(config: Record<string, unknown>, names: string[]): Record<string, unknown> {
  const network = ((config.feature as Record<string, unknown> | undefined)?.network ?? {}) as Record<string, unknown>;
  // A filter of its own, or a shorthand (dns: false) that a filter would change the meaning of.
  const own = (k: string) =>
    network[k] !== undefined && (typeof network[k] !== 'object' || (network[k] as Record<string, unknown> | null)?.filter !== undefined);
  if (own('dns') || own('outgoing')) return config;
  return mergeConfig(config, { feature: { network: { dns: { filter: { local: names } }, outgoing: { filter: { local: names } } } } });
}

/** The named services and everything they depend on, as `docker compose up SERVICE...` starts them. */
function withDependencies(doc: ComposeDoc, names: string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (n: string) => {
    if (seen.has(n) || !doc.services[n]) return;
    seen.add(n);
    const deps = doc.services[n]!.depends_on;
    for (const d of Array.isArray(deps) ? (deps as string[]) : Object.keys((deps as Record<string, unknown> | undefined) ?? {})) visit(d);
    const mode = doc.services[n]!.network_mode;
    if (typeof mode === 'string' && mode.startsWith('service:')) visit(mode.slice('service:'.length));
  };
  names.forEach(visit);
  return seen;
}

function parseBlock<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.flatMap((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    return keys.map((p) => {
      const [formatted] = formatIssues([{ ...issue, path: p } as typeof issue]);
      return `${[where, ...p.map(String)].join('.')}: ${issue.code === 'unrecognized_keys' ? 'unknown key' : formatted!.message}`;
    });
  });
  throw new MirrordError(problems.join('; '), ExitCode.Config, 'Fix the x-mirrord block (docs/up.md lists its keys)');
}
