import net from 'node:net';
import { flagOverrides } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { createProgress, type Progress } from '../progress.js';
import { startSession } from '../session/session.js';
import { targetFrom } from '../target.js';
import { sessionSettings } from '../session/from-config.js';
import { inProcess } from '../session/in-process.js';

export interface Forward {
  localPort: number;
  host: string;
  remotePort: number;
}

/** `[LPORT:]HOST:RPORT`; HOST may be a name the target resolves, or [IPv6]. */
export function parseForward(text: string): Forward {
  const m = /^(?:(\d+):)?(\[[^\]]+\]|[^:]+):(\d+)$/.exec(text.trim());
  const port = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  const l = port(m?.[1]);
  const r = port(m?.[3]);
  if (!m || !r || r > 65535 || (l !== undefined && (l < 1 || l > 65535))) {
    throw new MirrordError(`invalid forward "${text}"`, ExitCode.Usage, 'Use -L [LOCAL_PORT:]HOST:REMOTE_PORT, e.g. -L 6380:redis:6379');
  }
  return { localPort: l ?? r, host: m[2]!.replace(/^\[|\]$/g, ''), remotePort: r };
}

/**
 * `mirrord port-forward -t TARGET -L [LPORT:]HOST:RPORT`: a local port whose connections are dialled
 * from the target's network, HOST resolved as the target resolves it. Runs until interrupted.
 */
export async function portForwardCommand(
  forwards: string[],
  flags: { target?: string; namespace?: string; configFile?: string },
  log: Logger,
  progress: Progress = createProgress(),
  stop: Promise<void> = interrupted(),
): Promise<number> {
  if (forwards.length === 0) throw new MirrordError('nothing to forward', ExitCode.Usage, 'Give at least one -L [LOCAL_PORT:]HOST:REMOTE_PORT');
  const parsed = forwards.map(parseForward);
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides({ target: flags.target }) });
  const session = await startSession({ target: targetFrom(config, flags.namespace), ...sessionSettings(config), intproxy: inProcess(), log, progress });
  const servers: net.Server[] = [];
  try {
    for (const f of parsed) {
      const server = net.createServer({ allowHalfOpen: true }, (local) => void forward(local, f));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) =>
          reject(new MirrordError(`cannot listen on 127.0.0.1:${f.localPort} (${err.code ?? err.message})`, ExitCode.Usage, 'Pick another local port')),
        );
        server.listen(f.localPort, '127.0.0.1', () => resolve());
      });
      servers.push(server);
      progress.succeed();
      process.stderr.write(`mirrord: forwarding 127.0.0.1:${f.localPort} -> ${f.host}:${f.remotePort} from ${session.targetDisplay}\n`);
    }
    let lost: string | undefined;
    await Promise.race([stop, new Promise<void>((resolve) => session.onLinkLost((why) => resolve(void (lost = why))))]);
    if (lost) throw new MirrordError(`lost the link to the agent (${lost})`, ExitCode.Agent, 'Run the command again');
    return 0;
  } finally {
    for (const s of servers) s.close();
    await session.close();
  }

  async function forward(local: net.Socket, f: Forward): Promise<void> {
    local.on('error', () => undefined);
    try {
      let ip = f.host;
      if (net.isIP(ip) === 0) {
        const r = await session.host.agent.request('dns.lookup', { name: f.host, family: 4 });
        ip = r.addresses[0]?.address ?? '';
        if (!ip) throw Object.assign(new Error(`${f.host} does not resolve in the target`), { code: 'ENOTFOUND' });
      }
      const remote = await session.host.agent.connectTcp(ip, f.remotePort);
      local.pipe(remote).pipe(local);
      remote.on('error', () => local.destroy());
      local.on('close', () => remote.destroy());
    } catch (err) {
      log.warn(`forward to ${f.host}:${f.remotePort} failed: ${(err as { code?: string }).code ?? (err as Error).message}`);
      local.destroy();
    }
  }
}

function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => resolve());
  });
}
