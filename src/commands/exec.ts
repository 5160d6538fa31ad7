import { flagOverrides, type ExecFlags } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { prepareProgram, runProcess } from '../local/process.js';
import { createProgress, type Progress } from '../progress.js';
import { sessionSettings } from '../session/from-config.js';
import { inProcess, type InProcess } from '../session/in-process.js';
import { phase } from '../session/phases.js';
import { startSession, type Session } from '../session/session.js';
import { targetFrom } from '../target.js';

export type { ExecFlags };

/** `mirrord exec [flags] -- CMD [ARGS...]`: the program runs here, in the context of the target. */
export async function execCommand(argv: string[], flags: ExecFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new MirrordError('no command to run', ExitCode.Usage, 'Usage: mirrord exec -t TARGET -- CMD [ARGS...]');
  phase(log, 'exec command');
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
  const target = targetFrom(config, flags.namespace);
  const { program, layer } = prepareProgram(cmd);
  phase(log, 'config loaded');

  let session: Session<InProcess> | undefined;
  try {
    session = await startSession({ target, ...sessionSettings(config), intproxy: inProcess({ exe: program }), log, progress });
    phase(log, 'session started');
    return await runProcess(session, { program, layer, argv0: cmd, args }, log, progress);
  } catch (err) {
    progress.fail();
    throw err;
  } finally {
    await session?.close();
  }
}
