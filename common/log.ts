/**
 * Logs go to stderr only, and only at or above the level chosen with MIRRORD_LOG
 * (error | warn | info | debug | trace; default warn). Results go to stdout elsewhere.
 */
const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LEVELS)[number];

export interface Logger {
  error(msg: string, ...rest: unknown[]): void;
  warn(msg: string, ...rest: unknown[]): void;
  info(msg: string, ...rest: unknown[]): void;
  debug(msg: string, ...rest: unknown[]): void;
  trace(msg: string, ...rest: unknown[]): void;
  child(namespace: string): Logger;
}

export function parseLevel(value: string | undefined, fallback: LogLevel = 'warn'): LogLevel {
  const v = (value ?? '').toLowerCase();
  return (LEVELS as readonly string[]).includes(v) ? (v as LogLevel) : fallback;
}

/** One log line from its parts; `textLine` is the default, `jsonLine` mirrord's JSON shape. */
export type LineFormat = (namespace: string, level: LogLevel, message: string) => string;

export const textLine: LineFormat = (namespace, level, message) => `[${namespace}] ${level}: ${message}`;

/** As mirrord's JSON logs (tracing's JSON format): {timestamp, level, target, fields: {message}}. */
export const jsonLine: LineFormat = (target, level, message) =>
  JSON.stringify({ timestamp: new Date().toISOString(), level: level.toUpperCase(), target, fields: { message } });

export function createLogger(
  namespace = 'mirrord',
  level: LogLevel = parseLevel(process.env.MIRRORD_LOG),
  sink: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  format: LineFormat = textLine,
): Logger {
  const max = LEVELS.indexOf(level);
  const at =
    (l: LogLevel) =>
    (msg: string, ...rest: unknown[]) => {
      if (LEVELS.indexOf(l) > max) return;
      const extra = rest.map((r) => (r instanceof Error ? r.message : typeof r === 'string' ? r : JSON.stringify(r)));
      sink(format(namespace, l, [msg, ...extra].join(' ')));
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    child: (ns) => createLogger(`${namespace}:${ns}`, level, sink, format),
  };
}

export const silentLogger: Logger = createLogger('silent', 'error', () => undefined);
