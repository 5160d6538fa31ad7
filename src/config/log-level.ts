import { z } from 'zod';

/**
 * mirrord's `agent.log_level` is a level or any RUST_LOG filter (`"mirrord=debug,warn"`). Our agent
 * has one level, so a filter is reduced to the level it gives mirrord's own code: a directive for
 * `mirrord` or `mirrord_agent` (and their modules) first, else the default directive (no target).
 * A filter that names only other crates leaves the default, warn.
 */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;
export type AgentLogLevel = (typeof LOG_LEVELS)[number];

function level(text: string): AgentLogLevel | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'off') return 'error';
  return (LOG_LEVELS as readonly string[]).includes(t) ? (t as AgentLogLevel) : undefined;
}

/** The level a RUST_LOG-style filter gives mirrord's code, or undefined when it is not such a filter. */
export function levelOfFilter(filter: string): AgentLogLevel | undefined {
  let ours: AgentLogLevel | undefined;
  let fallback: AgentLogLevel | undefined;
  let understood = false;
  for (const raw of filter.split(',')) {
    const d = raw.trim();
    if (!d) continue;
    const eq = d.lastIndexOf('=');
    if (eq < 0) {
      const l = level(d);
      if (l) {
        fallback = l;
        understood = true;
        continue;
      }
      // A bare target (`mirrord`) means "everything" for it, as in RUST_LOG.
      if (/^[A-Za-z_][\w:]*$/.test(d)) {
        if (/^mirrord(_agent)?(::|$)/.test(d)) ours = 'trace';
        understood = true;
        continue;
      }
      return undefined;
    }
    const target = d.slice(0, eq).replace(/\[.*\]$/, '');
    const l = level(d.slice(eq + 1));
    if (!l || !/^[A-Za-z_][\w:]*$/.test(target)) return undefined;
    understood = true;
    if (/^mirrord(_agent)?(::|$)/.test(target)) ours = ours && LOG_LEVELS.indexOf(ours) > LOG_LEVELS.indexOf(l) ? ours : l;
  }
  if (!understood) return undefined;
  return ours ?? fallback ?? 'warn';
}

export const agentLogLevel = z.string().transform((v, ctx) => {
  const l = levelOfFilter(v);
  if (!l) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a level (error, warn, info, debug, trace) or a RUST_LOG filter like "mirrord=debug,warn", got ${JSON.stringify(v)}`,
    });
    return z.NEVER;
  }
  return l;
});
