import { silentLogger } from '../../common/log.js';
import { initCommand, type InitFlags } from '../../src/commands/init.js';

/** Runs `mirrord init` in-process, collecting what it prints on stdout (out) and stderr (err). */
export async function runInit(flags: InitFlags): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await initCommand(
    flags,
    silentLogger,
    (s) => out.push(s),
    (s) => err.push(s),
  );
  return { code, out, err };
}
