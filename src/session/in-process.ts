import os from 'node:os';
import { AgentConnection } from '../agent-link/connection.js';
import { AgentLinkError } from '../../common/link/errors.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { AP_CLIENT } from '../../common/version.js';
import type { ResolvedFeatures } from '../config/schema.js';
import { layerHintEnv } from '../fs/rules.js';
import { Intproxy } from '../intproxy/intproxy.js';
import { pingOptions, proxyLogger } from '../intproxy/proxy-log.js';
import { parseLevel } from '../../common/log.js';
import { createFdPass } from './fd-pass.js';
import { phase } from './phases.js';
import type { IntproxyHost } from './session.js';

/** The in-process host's extras: the agent link and the intproxy themselves. */
export interface InProcess {
  readonly agent: AgentConnection;
  readonly intproxy: Intproxy;
}

/**
 * The intproxy in this process (exec, port-forward, diagnose): it speaks to the agent over the
 * platform's link directly, and the layers of the local program connect to it on loopback.
 * `exe`: the program's executable, whose directory the file rules keep local. `beforeIntproxy`:
 * runs on the agent link before the intproxy starts, and may change its features (a dev
 * container copies the target's mounted files, then reads them locally).
 */
export function inProcess(
  opts: { exe?: string; beforeIntproxy?: (agent: AgentConnection, features: ResolvedFeatures) => Promise<ResolvedFeatures> } = {},
): IntproxyHost<InProcess> {
  return {
    name: 'in-process',
    makeFdPass: (_session, log) => createFdPass(log),
    async start(ctx) {
      ctx.progress.update(`waiting for the agent on ${ctx.target.display}`);
      const proxy = ctx.proxies.internal;
      // internal_proxy's log: its level, file and format (src/intproxy/proxy-log.ts).
      const proxyLog = proxyLogger(
        proxy && { level: proxy.log_level, destination: proxy.log_destination, json: proxy.json_log },
        'mirrord-intproxy',
        ctx.id,
        ctx.log.child('intproxy'),
        parseLevel(process.env.MIRRORD_LOG),
      );
      const ping = pingOptions(proxy?.ping_interval);
      let agent: AgentConnection;
      try {
        agent = await AgentConnection.connect(ctx.agent.link, {
          ...ping,
          token: ctx.token,
          // Who the session is, for `mirrord status` on a shared agent.
          client: `${AP_CLIENT} ${userHost()} pid ${process.pid}${ctx.key ? ` key ${ctx.key}` : ''}`,
          handshakeTimeoutMs: ctx.agentConfig.startup_timeout * 1000,
          streamWindow: ctx.agent.streamWindow,
          log: ctx.log.child('link'),
        });
      } catch (err) {
        throw ctx.didNotAnswer(err);
      }
      phase(ctx.log, 'agent handshake');
      // The program's environment is asked for now, beside the intproxy's start, rather than after it.
      const envAsked = agent.request('env.get', {});
      envAsked.catch(() => undefined);
      let intproxy: Intproxy;
      let idled: string | undefined;
      const lost: Array<(reason: string) => void> = [];
      try {
        // The guard starts with the first subscription: sessions without incoming traffic need none.
        const beforeIncoming = agent.info.agentPid ? () => ctx.guard(agent.info.agentPid) : undefined;
        const features = opts.beforeIntproxy ? await opts.beforeIntproxy(agent, ctx.features) : ctx.features;
        // The agent starts its socket helper before it answers the link: it is up by now, if at all.
        const fdPassing = ctx.fdPass ? await ctx.fdPass.probe(ctx.log) : false;
        intproxy = await Intproxy.start({
          agent,
          features,
          log: proxyLog,
          beforeIncoming,
          fdPassing,
          proxy,
          // mirrord's intproxy exits after its idle timeouts: the session ends, the program runs on.
          onIdle: (reason) => {
            idled = reason;
            for (const cb of lost) cb(`the session ended: ${reason}`);
            void intproxy.close().finally(() => agent.close());
          },
        });
      } catch (err) {
        agent.close();
        throw err;
      }
      phase(ctx.log, 'intproxy started');
      intproxy.files.exe = opts.exe;
      // The file rules need the target's mounts (one more request): asked now too, once exe is known.
      intproxy.files.rules().catch(() => undefined);
      let envFirst: typeof envAsked | undefined = envAsked;
      return {
        agent,
        intproxy,
        layerAddr: intproxy.address,
        remoteEnv: async () => {
          try {
            const asked = envFirst ?? agent.request('env.get', {});
            envFirst = undefined;
            return (await asked).env;
          } catch (err) {
            // The agent could not read it (agent.disabled_capabilities without SYS_PTRACE, say): one line, not a crash.
            if (err instanceof AgentLinkError && err.code === 'EACCES') throw new MirrordError(err.message.replace(/^env\.get: /, ''), ExitCode.Agent);
            throw err;
          }
        },
        fileHints: async () => layerHintEnv(await intproxy.files.rules()),
        onLinkLost(cb) {
          lost.push(cb);
          agent.onClose((err) => idled === undefined && cb(err?.message ?? 'the agent closed the link'));
        },
        async close() {
          await intproxy.close();
          agent.close();
        },
      };
    },
  };
}

function userHost(): string {
  try {
    return `${os.userInfo().username}@${os.hostname()}`;
  } catch {
    return os.hostname();
  }
}
