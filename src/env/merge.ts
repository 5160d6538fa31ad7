import { readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { jsRegexSource } from '../config/shapes.js';

/**
 * Variables that describe the machine or the shell rather than the application: copying them from
 * the target would break the local program (PATH, HOME) or lie about where it runs.
 */
export const NEVER_COPIED = [
  'PATH',
  'HOME',
  'HOSTNAME',
  'PWD',
  'OLDPWD',
  'SHLVL',
  'SHELL',
  'USER',
  'LOGNAME',
  'TERM',
  'TMPDIR',
  '_',
  'LD_PRELOAD',
  'LD_LIBRARY_PATH',
  'MIRRORD_*',
];

export interface EnvSettings {
  include?: string[];
  exclude?: string[];
  override?: Record<string, string>;
  env_file?: string;
  /** `{regex: value}`: a remote or env_file variable whose name matches gets the value (mirrord's `feature.env.mapping`). */
  mapping?: Record<string, string>;
  /** Names removed from the result whatever their source, in any case (mirrord's `feature.env.unset`). */
  unset?: string[];
}

/** `*` and `?` wildcards, whole-name, case-sensitive like environment names. */
export function wildcardMatcher(patterns: string[]): (name: string) => boolean {
  const res = patterns.map(
    (p) =>
      new RegExp(
        '^' +
          p
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '.*')
            .replace(/\?/g, '.') +
          '$',
      ),
  );
  return (name) => res.some((r) => r.test(name));
}

/**
 * The program's environment, in mirrord's order: local < remote (filtered) < env_file, then
 * `mapping` rewrites the values of the remote and env_file variables whose names match (the first
 * matching regex wins, matched anywhere in the name unless anchored), then `override`, then `unset`
 * removes names in any case. Returns the merged environment and the names taken from the target.
 */
export function mergeEnv(
  local: NodeJS.ProcessEnv,
  remote: Record<string, string>,
  settings: EnvSettings,
  readFile: (p: string) => string = (p) => readFileSync(p, 'utf8'),
): { env: Record<string, string>; fromRemote: string[] } {
  const never = wildcardMatcher(NEVER_COPIED);
  const included = settings.include ? wildcardMatcher(settings.include) : () => true;
  const excluded = wildcardMatcher(settings.exclude ?? []);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(local)) if (v !== undefined) env[k] = v;
  const fromRemote: string[] = [];
  for (const [k, v] of Object.entries(remote)) {
    if (never(k) || !included(k) || excluded(k)) continue;
    env[k] = v;
    fromRemote.push(k);
  }
  const fromFile: string[] = [];
  if (settings.env_file) {
    let text: string;
    try {
      text = readFile(settings.env_file);
    } catch (err) {
      throw new MirrordError(
        `cannot read env_file ${settings.env_file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        ExitCode.Config,
        'Check feature.env.env_file or --env-file',
      );
    }
    const parsed = parseDotenv(text);
    Object.assign(env, parsed);
    fromFile.push(...Object.keys(parsed));
  }
  const mapping = Object.entries(settings.mapping ?? {}).map(([src, value]) => [new RegExp(jsRegexSource(src)), value] as const);
  if (mapping.length) {
    for (const name of new Set([...fromRemote, ...fromFile])) {
      const hit = mapping.find(([re]) => re.test(name));
      if (hit) env[name] = hit[1];
    }
  }
  Object.assign(env, settings.override ?? {});
  const unset = new Set((settings.unset ?? []).map((n) => n.toUpperCase()));
  if (unset.size) for (const name of Object.keys(env)) if (unset.has(name.toUpperCase())) delete env[name];
  return { env, fromRemote: fromRemote.filter((n) => n in env) };
}
