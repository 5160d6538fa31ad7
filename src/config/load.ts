import { existsSync } from 'node:fs';
import path from 'node:path';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { configSchema, type MirrordConfig } from './schema.js';

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

const tomlLoader: Loader = (_file, content) => parseToml(content);

export interface LoadedConfig {
  config: MirrordConfig;
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

export async function loadConfig(opts: { file?: string; cwd?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigOverrides }): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const explorer = cosmiconfig('mirrord', {
    searchPlaces: SEARCH_PLACES,
    searchStrategy: 'project',
    loaders: { '.toml': tomlLoader, noExt: tomlOrJson() },
  });

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
  return { config: validateConfig(applyOverrides(raw, opts.overrides ?? []), filepath), filepath };
}

export function validateConfig(raw: unknown, filepath?: string): MirrordConfig {
  const result = configSchema.safeParse(raw ?? {});
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
    else if (issue.code === 'invalid_union') message = 'has the wrong type';
    return [{ path: base || '(root)', message }];
  });
}

function applyOverrides(raw: unknown, overrides: ConfigOverrides): unknown {
  if (overrides.length === 0) return raw;
  const root: Record<string, unknown> = isPlainObject(raw) ? structuredClone(raw) : {};
  for (const { path: keys, value } of overrides) {
    let node = root;
    for (const key of keys.slice(0, -1)) {
      const next = node[key];
      // mirrord's shorthand forms (a bare mode string or boolean) become objects when a flag adds to them.
      if (typeof next === 'string') node[key] = { mode: next };
      else if (typeof next === 'boolean') node[key] = next ? {} : { enabled: false };
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
  return (file, content) => {
    const trimmed = content.trim();
    if (trimmed === '') return {};
    if (trimmed.startsWith('{')) return JSON.parse(trimmed);
    try {
      return parseToml(content);
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
