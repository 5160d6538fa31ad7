import { execFileSync } from 'node:child_process';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * The templating mirrord applies to its config files before parsing them: `{{ key }}`,
 * `{{ git_branch }}` and `{{ get_env(name="X", default="y") }}`, each optionally followed by Tera's
 * `| default(value="z")`, used when the value is missing (no git branch, an unset variable). Only
 * these forms exist; anything else inside `{{ }}` is an error naming its line, so a typo never
 * reaches the parser as text.
 */
export interface TemplateContext {
  /** The session key (`-k`, else the user name). */
  key: string;
  env?: NodeJS.ProcessEnv;
  /** The current git branch; computed on first use (git in the file's directory). */
  gitBranch?: () => string;
}

const EXPR = /\{\{\s*([\s\S]*?)\s*\}\}/g;
/** Tera's strings take double or single quotes (single ones are what a JSON file can hold unescaped). */
const STR = `(?:"([^"]*)"|'([^']*)')`;
const GET_ENV = new RegExp(`^get_env\\(\\s*name\\s*=\\s*${STR}\\s*(?:,\\s*default\\s*=\\s*${STR}\\s*)?\\)$`);
const DEFAULT_FILTER = new RegExp(`^([\\s\\S]*?)\\s*\\|\\s*default\\(\\s*value\\s*=\\s*${STR}\\s*\\)$`);

export function renderTemplate(text: string, ctx: TemplateContext, file = 'the config file'): string {
  const env = ctx.env ?? process.env;
  return text.replace(EXPR, (whole, inner: string, offset: number) => {
    const filtered = DEFAULT_FILTER.exec(inner);
    const expr = filtered ? filtered[1]! : inner;
    const fallback = filtered ? (filtered[2] ?? filtered[3]) : undefined;
    const missing = (what: string): string => {
      if (fallback !== undefined) return fallback;
      throw templateError(file, text, offset, what);
    };
    if (expr === 'key') return ctx.key;
    if (expr === 'git_branch') {
      try {
        return (ctx.gitBranch ?? (() => gitBranch()))();
      } catch (err) {
        if (fallback !== undefined) return fallback;
        throw err;
      }
    }
    const m = GET_ENV.exec(expr);
    if (m) {
      const name = (m[1] ?? m[2])!;
      return env[name] ?? m[3] ?? m[4] ?? missing(`get_env: ${name} is not set and has no default`);
    }
    throw templateError(file, text, offset, `unknown template expression ${whole}`);
  });
}

function templateError(file: string, text: string, offset: number, what: string): MirrordError {
  const line = text.slice(0, offset).split('\n').length;
  return new MirrordError(
    `${file}:${line}: ${what}`,
    ExitCode.Config,
    'Templates know {{ key }}, {{ git_branch }} and {{ get_env(name="NAME", default="VALUE") }}, each with an optional | default(value="VALUE")',
  );
}

/** The branch checked out in `cwd`; an error when there is none (no git, not a repository, detached). */
export function gitBranch(cwd = process.cwd()): string {
  try {
    const out = execFileSync('git', ['rev-parse', '--abbrev-ref', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (out && out !== 'HEAD') return out;
  } catch {
    // handled below
  }
  throw new MirrordError(`{{ git_branch }}: no git branch is checked out in ${cwd}`, ExitCode.Config, 'Run mirrord up inside a git checkout, or use {{ key }}');
}
