import { ConfigError, loadConfig } from '../config/load.js';
import { noticesFor } from '../config/notices.js';
import { MirrordError } from '../../common/errors.js';
import { targetFrom } from '../target.js';

/**
 * `mirrord verify-config`: every problem at once, by path. With --output json (for IDEs) the answer
 * is one JSON object on stdout, `{type: "Success", config, warnings}` or `{type: "Fail", errors}`,
 * the shape mirrord's own verify-config prints. Keys accepted without effect here are named in the
 * warnings, and so is a target that parses but cannot run here (it fails at session start).
 */
export async function verifyConfigCommand(flags: { configFile?: string; output?: string }, out: (s: string) => void): Promise<number> {
  const json = flags.output === 'json';
  try {
    const { config, raw, filepath } = await loadConfig({ file: flags.configFile });
    const warnings = noticesFor(raw);
    try {
      targetFrom(config);
    } catch (err) {
      // A syntax error in the target is the config's error; a kind that cannot run is a warning.
      if (!(err instanceof MirrordError) || !/cannot run here/.test(err.message)) throw err;
      warnings.push(`target: ${err.message} (the session will stop at start). ${err.hint ?? ''}`.trim());
    }
    if (json) out(JSON.stringify({ type: 'Success', config, warnings, file: filepath ?? null }));
    else {
      out(`config OK: ${filepath ?? '(no file found: defaults)'}`);
      for (const w of warnings) out(`notice: ${w}`);
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
