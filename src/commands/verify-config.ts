import { ConfigError, loadConfig } from '../config/load.js';
import { MirrordError } from '../../common/errors.js';
import { targetFrom } from '../target.js';

/**
 * `mirrord verify-config`: every problem at once, by path. With --output json (for IDEs) the answer
 * is one JSON object on stdout, `{type: "Success", config, warnings}` or `{type: "Fail", errors}`,
 * the shape mirrord's own verify-config prints.
 */
export async function verifyConfigCommand(flags: { configFile?: string; output?: string }, out: (s: string) => void): Promise<number> {
  const json = flags.output === 'json';
  try {
    const { config, filepath } = await loadConfig({ file: flags.configFile });
    const warnings: string[] = [];
    if (config.target !== undefined) targetFrom(config);
    else warnings.push('no target set: pass -t on the command line');
    if (json) out(JSON.stringify({ type: 'Success', config, warnings, file: filepath ?? null }));
    else {
      out(`config OK: ${filepath ?? '(no file found: defaults)'}`);
      for (const w of warnings) out(`warning: ${w}`);
    }
    return 0;
  } catch (err) {
    if (!(err instanceof MirrordError)) throw err;
    if (json) {
      const errors = err instanceof ConfigError ? err.problems.map((p) => `${p.path}: ${p.message}`) : [err.message];
      out(JSON.stringify({ type: 'Fail', errors }));
      return err.code;
    }
    throw err;
  }
}
