import { appendFileSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createLogger, jsonLine, textLine, type LogLevel, type Logger } from '../../common/log.js';

/**
 * The log of mirrord's proxies as `internal_proxy` / `external_proxy` set it: `log_level` (a level
 * or a RUST_LOG filter, already reduced to a level by the config), `log_destination` (a file, or a
 * directory: a path ending in `/` or an existing directory gets `NAME-SESSION.log` inside; parent
 * directories are made) and `json_log` (one JSON object a line, mirrord's shape: timestamp, level,
 * target, fields.message).
 * Without a destination the lines go where the CLI's own go (stderr).
 */
export interface ProxyLogSettings {
  level?: LogLevel;
  destination?: string;
  json?: boolean;
}

/** The file a destination names for this proxy and session (mirrord's rules for a directory). */
export function logFilePath(destination: string, name: string, session: string): string {
  let isDir = destination.endsWith('/');
  if (!isDir) {
    try {
      isDir = statSync(destination).isDirectory();
    } catch {
      isDir = false;
    }
  }
  return isDir ? path.join(destination, `${name}-${session}.log`) : destination;
}

/**
 * A logger for one proxy; `fallback` is the CLI's logger (used as it is when nothing is set).
 * The file is opened (and its directories made) here, so a bad destination fails the start.
 */
export function proxyLogger(settings: ProxyLogSettings | undefined, name: string, session: string, fallback: Logger, fallbackLevel: LogLevel): Logger {
  if (!settings || (settings.level === undefined && settings.destination === undefined && !settings.json)) return fallback;
  const level = settings.level ?? fallbackLevel;
  let write: (line: string) => void = (line) => process.stderr.write(line + '\n');
  if (settings.destination !== undefined) {
    const file = logFilePath(settings.destination, name, session);
    mkdirSync(path.dirname(file), { recursive: true });
    appendFileSync(file, '');
    write = (line) => {
      try {
        appendFileSync(file, line + '\n');
      } catch {
        // A log that cannot be written must not take the session down.
      }
    };
  }
  return createLogger(name, level, write, settings.json ? jsonLine : textLine);
}

/** The link's silence limit without internal_proxy.ping_interval (docs/protocol.md). */
export const LINK_DEAD_AFTER_MS = 15_000;

/**
 * internal_proxy.ping_interval onto the agent link: the intproxy pings every interval, and declares
 * the link lost after 3 intervals without a frame from the agent, never before 15 s (the agent's
 * start and handshake share that clock).
 */
export function pingOptions(pingInterval: number | undefined): { heartbeatMs?: number; deadAfterMs?: number } {
  if (!pingInterval) return {};
  return { heartbeatMs: pingInterval * 1000, deadAfterMs: Math.max(LINK_DEAD_AFTER_MS, pingInterval * 3000) };
}
