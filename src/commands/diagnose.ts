import { flagOverrides } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import type { Logger } from '../../common/log.js';
import { createProgress, type Progress } from '../progress.js';
import { startSession } from '../session/session.js';
import { targetFrom } from '../target.js';
import { sessionSettings } from '../session/from-config.js';
import { inProcess } from '../session/in-process.js';

/**
 * `mirrord diagnose latency`: round trips to the agent (a request it answers at once), so a slow
 * session can be told apart from a slow application. Results on stdout, JSON with --output json.
 */
export async function diagnoseLatencyCommand(
  flags: { target?: string; namespace?: string; configFile?: string; count?: string; output?: string },
  log: Logger,
  out: (s: string) => void,
  progress: Progress = createProgress(),
): Promise<number> {
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides({ target: flags.target }) });
  const startedAt = Date.now();
  const session = await startSession({ target: targetFrom(config, flags.namespace), ...sessionSettings(config), intproxy: inProcess(), log, progress });
  const startMs = Date.now() - startedAt;
  try {
    progress.succeed();
    const n = Math.max(1, Math.min(10_000, Number(flags.count ?? 100) || 100));
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      await session.host.agent.request('agent.info', {});
      ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    ms.sort((a, b) => a - b);
    const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!;
    const result = {
      target: session.targetDisplay,
      sessionStartMs: startMs,
      roundTrips: n,
      minMs: ms[0]!,
      p50Ms: at(0.5),
      p90Ms: at(0.9),
      p99Ms: at(0.99),
      maxMs: ms[ms.length - 1]!,
    };
    if (flags.output === 'json') out(JSON.stringify(result));
    else {
      out(`agent on ${result.target}: session start ${startMs} ms`);
      out(
        `${n} round trips: min ${result.minMs.toFixed(3)} ms, p50 ${result.p50Ms.toFixed(3)} ms, p90 ${result.p90Ms.toFixed(3)} ms, p99 ${result.p99Ms.toFixed(3)} ms, max ${result.maxMs.toFixed(3)} ms`,
      );
    }
    return 0;
  } finally {
    await session.close();
  }
}
