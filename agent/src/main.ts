/**
 * The agent process: serves one AP link on stdin/stdout (the container's attached streams).
 * stdout carries frames only; logs go to stderr. Exits 0 when the link ends
 * or dies, and on SIGTERM/SIGINT, after closing every socket it opened. Runs on Node 18.
 */
import { Duplex } from 'node:stream';
import { createLogger, jsonLine, parseLevel, textLine } from '../../common/log.js';
import { startSockHelper } from './fdpass/helper.js';
import { runGuard } from './guard.js';
import { runHeal } from './heal.js';
import { runListener } from './kube/listener.js';
import { serveAgent } from './server.js';
import { serveMetrics } from './metrics.js';
import { readSettings, SettingsError } from './settings.js';
import { openStdout } from './stdio.js';
import { runJoin, runShared } from './shared.js';

/** agent.json_log: one JSON object a line; else the plain `[namespace] level: message`. */
const jsonLog = process.env.MIRRORD_AGENT_JSON_LOG === '1';
const log = createLogger('mirrord-agent', parseLevel(process.env.MIRRORD_AGENT_LOG), undefined, jsonLog ? jsonLine : textLine);

function exit(code: number): never {
  process.exit(code);
}

async function main(): Promise<void> {
  let settings;
  try {
    settings = readSettings();
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    log.error(err.message);
    exit(2);
  }
  const mode = process.env.MIRRORD_AGENT_MODE ?? '';
  // The processes that serve sessions serve the metrics too (not the guard, healer, join relay or listener).
  if (settings.metrics && ['', 'serve', 'shared'].includes(mode)) await serveMetrics(settings.metrics, log.child('metrics'));
  if (process.env.MIRRORD_AGENT_MODE === 'guard') {
    await runGuard({ pid: Number(process.env.MIRRORD_GUARD_PID), session: process.env.MIRRORD_AGENT_SESSION ?? '', log: log.child('guard') });
    exit(0);
  }
  if (process.env.MIRRORD_AGENT_MODE === 'heal') {
    await runHeal({ session: process.env.MIRRORD_AGENT_SESSION ?? '', log: log.child('heal') });
    exit(0);
  }
  const num = (name: string, dflt?: number) => {
    const v = process.env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      log.error(`${name} must be a whole number, got ${JSON.stringify(v)}`);
      exit(2);
    }
    return n;
  };
  if (process.env.MIRRORD_AGENT_MODE === 'shared') {
    await runShared({
      session: process.env.MIRRORD_AGENT_SESSION ?? `pid${process.pid}`,
      targetPid: num('MIRRORD_AGENT_TARGET_PID', 1)!,
      ttlSeconds: num('MIRRORD_AGENT_TTL', 1)!,
      firstJoinSeconds: num('MIRRORD_AGENT_FIRST_CLIENT_TIMEOUT', 120)!,
      hostSocketPath: process.env.MIRRORD_AGENT_HOST_SOCKET || undefined,
      socketPath: process.env.MIRRORD_AGENT_SHARED_SOCKET || undefined,
      log: log.child('shared'),
    });
    exit(0);
  }
  if (process.env.MIRRORD_AGENT_MODE === 'join') {
    if (!process.env.MIRRORD_AGENT_TOKEN) {
      log.error('MIRRORD_AGENT_TOKEN is not set: refusing to join without a session token');
      exit(2);
    }
    exit(await runJoin({ session: process.env.MIRRORD_AGENT_SESSION ?? '', token: process.env.MIRRORD_AGENT_TOKEN, log: log.child('join') }));
  }
  if (process.env.MIRRORD_AGENT_MODE === 'listen') {
    if (!process.env.MIRRORD_AGENT_TOKEN) {
      log.error('MIRRORD_AGENT_TOKEN is not set: refusing to serve without a session token');
      exit(2);
    }
    await runListener({
      port: num('MIRRORD_AGENT_PORT', 0)!,
      containerId: process.env.MIRRORD_AGENT_TARGET_CONTAINER_ID || undefined,
      targetPid: num('MIRRORD_AGENT_TARGET_PID'),
      targetless: process.env.MIRRORD_AGENT_TARGETLESS === '1',
      ttlSeconds: num('MIRRORD_AGENT_TTL', 1)!,
      firstClientSeconds: num('MIRRORD_AGENT_FIRST_CLIENT_TIMEOUT', 120)!,
      session: process.env.MIRRORD_AGENT_SESSION ?? '',
      agentPath: process.argv[1]!,
      shared: process.env.MIRRORD_AGENT_SHARED === '1',
      log: log.child('listener'),
    });
    exit(0);
  }
  const token = process.env.MIRRORD_AGENT_TOKEN;
  if (!token) {
    log.error('MIRRORD_AGENT_TOKEN is not set: refusing to serve without a session token');
    exit(2);
  }
  const pidText = process.env.MIRRORD_AGENT_TARGET_PID ?? '1';
  const targetPid = Number(pidText);
  if (!Number.isInteger(targetPid) || targetPid < 1) {
    log.error(`MIRRORD_AGENT_TARGET_PID must be a process id, got ${JSON.stringify(pidText)}`);
    exit(2);
  }

  const stdout = openStdout();
  stdout.on('error', (err) => log.debug(`stdout: ${err.message}`));
  const link = Duplex.from({ readable: process.stdin, writable: stdout });

  const stop = (signal: string) => {
    log.info(`${signal}: closing`);
    link.destroy();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  const sockHelper = await startSockHelper(process.env, log);
  log.info(`serving target pid ${targetPid}`);
  await serveAgent(link, { token, targetPid, log, session: process.env.MIRRORD_AGENT_SESSION, sweepAtStart: true });

  // Let a last frame (HELLO_ERR) reach the client, but never wait long for a reader that is gone.
  await new Promise<void>((resolve) => {
    if (stdout.writableFinished || stdout.destroyed) return resolve();
    stdout.once('finish', resolve);
    stdout.once('close', resolve);
    setTimeout(resolve, 1_000).unref();
  });
  await sockHelper?.stop();
  exit(0);
}

main().catch((err: unknown) => {
  log.error(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  exit(1);
});
