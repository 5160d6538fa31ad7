import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cosmiconfig, defaultLoaders, type Loader } from 'cosmiconfig';
import type { z } from 'zod';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { expandKubeconfig } from './kubeconfig.js';
import { configSchema, type MirrordConfig } from './schema.js';
import { gitBranch, renderTemplate } from './template.js';

export const SEARCH_PLACES = [
  '.mirrord/mirrord.json',
  '.mirrord/mirrord.yaml',
  '.mirrord/mirrord.toml',
  'mirrord.json',
  'mirrord.yaml',
  'mirrord.yml',
  'mirrord.toml',
  '.mirrordrc',
  '.mirrordrc.json',
  '.mirrordrc.yaml',
  '.mirrordrc.yml',
  '.mirrordrc.toml',
  'package.json',
];

/** The user name, the default session key (`{{ key }}`) when neither MIRRORD_KEY nor the file's `key` sets one. */
export function defaultKey(env: NodeJS.ProcessEnv = process.env): string {
  try {
    return os.userInfo().username;
  } catch {
    return env.USER ?? 'mirrord';
  }
}

export interface LoadedConfig {
  config: MirrordConfig;
  /** What the file held (templates rendered, nulls dropped) with the flags applied: the keys the user set. */
  raw: unknown;
  /** Where it came from, or undefined when no file was found (all defaults). */
  filepath?: string;
}

/** A single validation problem, addressed by the path the user wrote. */
export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends MirrordError {
  constructor(
    readonly problems: ConfigProblem[],
    readonly filepath: string | undefined,
  ) {
    const where = filepath ? ` in ${filepath}` : '';
    super(
      `invalid configuration${where}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
      ExitCode.Config,
      'Fix those keys (see `mirrord verify-config` and schema/mirrord.schema.json)',
    );
  }
}

/** Flag values that override the file; applied before validation so they are checked the same way. */
export type ConfigOverrides = Array<{ path: string[]; value: unknown }>;

export interface LoadOptions {
  file?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigOverrides;
  /** The session key from the command line; MIRRORD_KEY wins, then this, then the file's `key`, then the user name. */
  key?: string;
}

export async function loadConfig(opts: LoadOptions): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const explorer = cosmiconfig('mirrord', { searchPlaces: SEARCH_PLACES, searchStrategy: 'project', loaders: templatedLoaders(env, opts.key) });

  const explicit = opts.file ?? (env.MIRRORD_CONFIG_FILE || undefined);
  let raw: unknown = {};
  let filepath: string | undefined;
  try {
    if (explicit) {
      const abs = path.resolve(cwd, explicit);
      if (!existsSync(abs)) {
        throw new MirrordError(`config file ${abs} does not exist`, ExitCode.Config, 'Check the -f path or MIRRORD_CONFIG_FILE');
      }
      const found = await explorer.load(abs);
      raw = found?.config ?? {};
      filepath = abs;
    } else {
      const found = await explorer.search(cwd);
      if (found && !found.isEmpty) {
        raw = found.config;
        filepath = found.filepath;
      }
    }
  } catch (err) {
    if (err instanceof MirrordError) throw err;
    throw new MirrordError(
      `cannot read config ${filepath ?? explicit ?? ''}: ${syntaxReason(err)}`,
      ExitCode.Config,
      'Fix the file syntax (JSON, YAML or TOML)',
      { cause: err },
    );
  }
  const given = applyOverrides(withoutNulls(raw), opts.overrides ?? []);
  const config = validateConfig(given, filepath);
  config.key = env.MIRRORD_KEY || opts.key || config.key || defaultKey(env);
  if (config.kubeconfig) config.kubeconfig = expandKubeconfig(config.kubeconfig, env, cwd);
  // No target is targetless (mirrord's rule), in the target's namespace when {namespace} is given alone.
  const t = config.target;
  if (t === undefined || (typeof t === 'object' && !t.path))
    config.target = { path: 'targetless', ...(typeof t === 'object' && t.namespace ? { namespace: t.namespace } : {}) };
  return { config, raw: given, filepath };
}

/** mirrord reads `null` as "not set" (its keys are Options); so do we, before validation. */
export function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = withoutNulls(x);
  return out;
}

/**
 * mirrord renders its config files as templates before parsing them, in every format; so do the
 * loaders here. package.json is not a mirrord file and is read as it is.
 */
function templatedLoaders(env: NodeJS.ProcessEnv, cliKey: string | undefined): Record<string, Loader> {
  const render = async (file: string, content: string): Promise<string> => {
    if (path.basename(file) === 'package.json' || !content.includes('{{')) return content;
    const key = env.MIRRORD_KEY || cliKey || (await fileKey(file, content, env)) || defaultKey(env);
    return renderTemplate(content, { key, env, gitBranch: () => gitBranch(path.dirname(file)) }, file);
  };
  const json = defaultLoaders['.json'];
  const yaml = defaultLoaders['.yaml'];
  return {
    '.json': async (f, c) => json(f, await render(f, c)),
    '.yaml': async (f, c) => yaml(f, await render(f, c)),
    '.yml': async (f, c) => yaml(f, await render(f, c)),
    '.toml': async (f, c) => (await parseToml())(await render(f, c)),
    noExt: async (f, c) => tomlOrJson()(f, await render(f, c)),
  };
}

/**
 * The TOML and YAML parsers, imported by the first file that needs one: a JSON config or none (the
 * common cases) does not load or compile them at every start (bench/README.md, bench:start).
 */
async function parseToml(): Promise<(text: string) => unknown> {
  return (await import('smol-toml')).parse;
}

async function parseYaml(): Promise<(text: string) => unknown> {
  return (await import('yaml')).parse;
}

/**
 * The file's top-level `key`, read before the rest is rendered (it is what `{{ key }}` stands for),
 * itself rendered without `{{ key }}`; undefined when the raw file does not parse or has none.
 */
async function fileKey(file: string, content: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  let raw: unknown;
  try {
    const ext = path.extname(file);
    raw = ext === '.toml' ? (await parseToml())(content) : ext === '.yaml' || ext === '.yml' ? (await parseYaml())(content) : JSON.parse(content);
  } catch {
    return undefined;
  }
  const key = isPlainObject(raw) ? raw.key : undefined;
  if (typeof key !== 'string') return undefined;
  try {
    return renderTemplate(key, { key: defaultKey(env), env, gitBranch: () => gitBranch(path.dirname(file)) }, file);
  } catch {
    return undefined; // the whole file's rendering reports it, with its line
  }
}

export function validateConfig(raw: unknown, filepath?: string): MirrordConfig {
  // Parsed once per process: zod's compiled fast path (new Function per object schema) costs more to
  // build than it saves on one parse (about 10 CPU ms of every start, bench:start).
  const result = configSchema.safeParse(withoutNulls(raw ?? {}), { jitless: true });
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues), filepath);
  return result.data;
}

export function formatIssues(issues: z.core.$ZodIssue[]): ConfigProblem[] {
  return issues.flatMap((issue) => {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => ({ path: base ? `${base}.${k}` : k, message: 'unknown key' }));
    }
    let message = issue.message;
    if (issue.code === 'invalid_value') message = `expected one of ${issue.values.map(String).join('|')}`;
    else if (issue.code === 'invalid_type') message = `expected ${issue.expected}`;
    else if (issue.code === 'invalid_union') {
      // A refusal inside one branch (a label target, say) says more than "wrong type".
      const custom = issue.errors.flat().filter((i) => i.code === 'custom');
      if (custom.length) return formatIssues(custom.map((i) => ({ ...i, path: [...issue.path, ...i.path] })));
      message = 'has the wrong type';
    }
    return [{ path: base || '(root)', message }];
  });
}

/** What `false` stands for in each section mirrord lets be a bare boolean (`true` is `{}`), as the schema reads it. */
const FALSE_MEANS: Record<string, Record<string, unknown>> = {
  'feature.network': { incoming: { mode: 'off' }, outgoing: { tcp: false, udp: false }, dns: { enabled: false } },
  'feature.network.incoming': { mode: 'off' },
  'feature.network.outgoing': { tcp: false, udp: false },
  'feature.network.dns': { enabled: false },
  'feature.fs': { mode: 'local' },
  'feature.env': { include: [] },
};

function applyOverrides(raw: unknown, overrides: ConfigOverrides): unknown {
  if (overrides.length === 0) return raw;
  const root: Record<string, unknown> = isPlainObject(raw) ? structuredClone(raw) : {};
  for (const { path: keys, value } of overrides) {
    let node = root;
    for (const [i, key] of keys.slice(0, -1).entries()) {
      const next = node[key];
      // mirrord's shorthand forms (a bare mode string or boolean) become objects when a flag adds to them.
      if (typeof next === 'string') node[key] = { mode: next };
      else if (typeof next === 'boolean') node[key] = next ? {} : structuredClone(FALSE_MEANS[keys.slice(0, i + 1).join('.')] ?? {});
      else if (!isPlainObject(next)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[keys[keys.length - 1]!] = value;
  }
  return root;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `.mirrordrc` without an extension may hold JSON or TOML. */
function tomlOrJson(): Loader {
  return async (file, content) => {
    const trimmed = content.trim();
    if (trimmed === '') return {};
    if (trimmed.startsWith('{')) return JSON.parse(trimmed);
    const parse = await parseToml();
    try {
      return parse(content);
    } catch (err) {
      throw new Error(`${file}: neither JSON nor TOML (${(err as Error).message.split('\n')[0]})`, { cause: err });
    }
  };
}

/** The parser's reason on one line, without the code frame some parsers add (`> 1 | {...`). */
function syntaxReason(err: unknown): string {
  const lines = (err as Error).message.split('\n').map((l) => l.trim());
  const kept = lines.filter((l) => l && !l.includes('|') && !l.startsWith('>') && !/^[-\s^]*\^[-\s^]*$/.test(l));
  return [...new Set(kept)].join(' ');
}
