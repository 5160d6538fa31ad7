/**
 * agent.json_log: the agent writes its log as JSON lines (agent/src/settings.ts, jsonLogLine); the
 * CLI shows them as it shows the plain ones, `[target] level: message`, led by the agent's own
 * timestamp. Any other line is kept as it is.
 */
export function readableAgentLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const o = JSON.parse(line) as { timestamp?: unknown; level?: unknown; target?: unknown; fields?: { message?: unknown } };
    if (typeof o.level !== 'string' || typeof o.fields?.message !== 'string') return line;
    const when = typeof o.timestamp === 'string' ? `${o.timestamp} ` : '';
    return `${when}[${typeof o.target === 'string' ? o.target : 'mirrord-agent'}] ${o.level.toLowerCase()}: ${o.fields.message}`;
  } catch {
    return line;
  }
}
