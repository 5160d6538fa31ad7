/**
 * The agent's end of the AP link (docs/protocol.md section 2): handshake, request dispatch to one
 * module per method family, and cleanup. Whatever ends the link (EOF, silence, a malformed frame),
 * every socket the agent opened is closed before serveAgent resolves.
 */
import type { Duplex } from 'node:stream';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import {
  ApKind,
  apKindName,
  decodeHello,
  decodeRequest,
  encodeHelloErr,
  encodeHelloOk,
  encodeResponse,
  isApMethod,
  parseApParams,
  type ApFrame,
  type ApMethod,
  type ApMethods,
} from '../../common/protocol/agent/index.js';
import { AP_VERSION, PRODUCT_VERSION } from '../../common/version.js';
import { FramedLink } from '../../common/link/framed-link.js';
import { AgentLinkError } from '../../common/link/errors.js';
import { errnoCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { DnsService } from './dns.js';
import { readTargetEnv } from './env.js';
import { FileService, fileHandlers } from './files.js';
import type { Iptables } from './incoming/iptables.js';
import { IncomingService } from './incoming/service.js';
import type { PortTable } from './incoming/ports.js';
import { OutgoingStreams } from './outgoing.js';
import { byteCounts, metrics } from './metrics.js';
import { settings } from './settings.js';
import { UnixStreams } from './unix-stream.js';

export interface ServeAgentOptions {
  token: string;
  targetPid: number;
  log?: Logger;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** The target's file system root; default /proc/PID/root. */
  root?: string;
  /** Where /proc is; tests may point it elsewhere. */
  procRoot?: string;
  /** Nameserver port (tests only; DNS is port 53 everywhere else). */
  dnsPort?: number;
  connectTimeoutMs?: number;
  /** Names this session's iptables chain; the CLI passes its session id. */
  session?: string;
  /** Injected by tests (never touch the host's iptables in-process). */
  iptables?: () => Promise<Iptables>;
  /**
   * After the handshake, remove the chains of sessions whose agent is gone, whether or not this
   * session ever asks for incoming traffic (the agent process sets it; in-process tests do not).
   */
  sweepAtStart?: boolean;
  /** The agent's port table when several links share it (one agent, many sessions). */
  ports?: PortTable;
}

/** What a method handler gives back; `after` runs once the RESPONSE is on the link. */
interface Handled<R> {
  result: R;
  after?: () => void;
}
type Handlers = { [M in ApMethod]: (params: ApMethods[M]['params']) => Promise<Handled<ApMethods[M]['result']>> };

const codeError = (code: string, message: string) => Object.assign(new Error(message), { code });

function sameToken(a: string, b: string): boolean {
  // Compare digests so the comparison takes the same time whatever the lengths.
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

export function serveAgent(link: Duplex, opts: ServeAgentOptions): Promise<void> {
  const log = opts.log;
  const procRoot = opts.procRoot ?? '/proc';
  const root = opts.root ?? `${procRoot}/${opts.targetPid}/root`;
  let state: 'hello' | 'open' | 'closed' = 'hello';

  let framed: FramedLink | undefined;
  const send = (frame: Buffer, payload?: Buffer): boolean => {
    if (payload) byteCounts.to_client += payload.length;
    return framed?.send(frame, payload) ?? false;
  };
  const outgoing = new OutgoingStreams(send, log?.child('outgoing'), opts.connectTimeoutMs);
  const conf = settings();
  const dns = new DnsService({ root, port: opts.dnsPort, log: log?.child('dns'), timeoutMs: conf.dnsTimeoutMs, attempts: conf.dnsAttempts });
  // agent.communication_timeout: the client is dropped after that much silence; the agent pings
  // often enough that a live client's PONGs always come first.
  const deadAfterMs = opts.deadAfterMs ?? conf.communicationTimeoutMs;
  const heartbeatMs = opts.heartbeatMs ?? (deadAfterMs !== undefined ? Math.min(5_000, Math.max(100, Math.floor(deadAfterMs / 3))) : undefined);
  let counted = false;
  const unix = new UnixStreams(root, send, log?.child('unix'));
  const files = new FileService(root, procRoot, opts.targetPid, log?.child('files'));
  const incoming = new IncomingService({
    send,
    session: opts.session ?? `pid${process.pid}`,
    log: log?.child('incoming'),
    iptables: opts.iptables,
    ports: opts.ports,
  });

  const handlers: Handlers = {
    ...fileHandlers(files),
    'outgoing.connect': async (p) => {
      const { result, start } = await outgoing.connect(p);
      return { result, after: start };
    },
    'outgoing.connect_unix': async (p) => ({ result: {}, after: (await unix.connect(p)).start }),
    'dns.lookup': async (p) => ({ result: await dns.lookup(p) }),
    'env.get': async () => ({ result: { env: await readTargetEnv(opts.targetPid, procRoot) } }),
    'incoming.subscribe': async (p) => ({ result: await incoming.subscribe(p) }),
    'incoming.unsubscribe': async (p) => {
      await incoming.unsubscribe(p.port);
      return { result: {} };
    },
    'incoming.stream': async (p) => {
      if (!incoming.handovers.stream(p.stream)) throw codeError('ENOENT', `stream ${p.stream} holds no connection waiting to be taken`);
      return { result: {} };
    },
    'agent.sessions': async () => ({ result: { sessions: incoming.ports.sessions(incoming.session) } }),
    'agent.info': async () => {
      let hostname = os.hostname();
      try {
        hostname = (await readFile(`${root}/etc/hostname`, 'utf8')).trim() || hostname;
      } catch {
        // No hostname file in the target: the UTS name we share with it is the best answer.
      }
      return { result: { version: AP_VERSION, targetPid: opts.targetPid, hostname } };
    },
  };

  const handleRequest = async (id: number, method: string, params: unknown): Promise<void> => {
    let handled: Handled<unknown>;
    try {
      if (!isApMethod(method)) throw codeError('ENOSYS', `unknown method ${method}`);
      const parsed = parseApParams(method, params);
      if (!parsed.ok) throw codeError('EINVAL', `${method}: ${parsed.problem}`);
      const handler = handlers[method] as (p: unknown) => Promise<Handled<unknown>>;
      handled = await handler(parsed.params);
    } catch (err) {
      const code = errnoCode(err) ?? 'EINTERNAL';
      log?.debug(`request ${id} ${method} failed: ${code} ${(err as Error).message}`);
      send(encodeResponse(id, { ok: false, error: { code, message: (err as Error).message } }));
      return;
    }
    if (state !== 'open') return; // the link went while we worked; closeAll owns the sockets
    send(encodeResponse(id, { ok: true, result: handled.result }));
    handled.after?.();
  };

  const refuse = (message: string) => {
    log?.warn(`handshake refused: ${message}`);
    send(encodeHelloErr(message));
    framed?.end();
  };

  const onFrame = (f: ApFrame): void => {
    if (state === 'hello') {
      if (f.kind !== ApKind.HELLO) return refuse(`expected HELLO, got ${apKindName(f.kind)}`);
      let hello;
      try {
        hello = decodeHello(f);
      } catch (err) {
        return refuse((err as Error).message);
      }
      if (hello.version !== AP_VERSION) return refuse(`protocol version ${hello.version} is not supported (this agent speaks ${AP_VERSION})`);
      if (!sameToken(hello.token, opts.token)) return refuse('wrong session token');
      state = 'open';
      counted = true;
      metrics.sessions.inc();
      log?.info(`client ${hello.client || '(unnamed)'} connected`);
      incoming.client = hello.client;
      send(encodeHelloOk({ version: AP_VERSION, agent: PRODUCT_VERSION, targetPid: opts.targetPid, agentPid: process.pid }));
      framed?.startHeartbeat();
      // After the answer: the client's first requests need not wait for iptables.
      if (opts.sweepAtStart) setImmediate(() => void incoming.sweepStale());
      return;
    }
    switch (f.kind) {
      case ApKind.REQUEST: {
        const { method, params } = decodeRequest(f);
        void handleRequest(f.channel, method, params);
        return;
      }
      case ApKind.EOF:
      case ApKind.CREDIT:
      case ApKind.CLOSE:
        // Client streams have odd ids, the agent's own (incoming connections) even ones.
        if (f.channel % 2 === 0) incoming.onFrame(f);
        else (unix.has(f.channel) ? unix : outgoing).onFrame(f);
        return;
      default:
        throw new Error(`unexpected ${apKindName(f.kind)} from the client`);
    }
  };

  const onData = (channel: number, pieces: Buffer[], length: number): void => {
    if (state === 'hello') return refuse('expected HELLO, got DATA');
    byteCounts.from_client += length;
    if (channel % 2 === 0) incoming.onData(channel, pieces, length);
    else (unix.has(channel) ? unix : outgoing).onData(channel, pieces, length);
  };

  return new Promise<void>((resolve) => {
    framed = new FramedLink(link, {
      heartbeatMs,
      deadAfterMs,
      log,
      onFrame,
      onData,
      onClose: (err) => {
        state = 'closed';
        if (counted) metrics.sessions.dec();
        log?.info(`link ended: ${err?.message ?? 'closed by the agent'}`);
        dns.cancelAll();
        void files.closeAll();
        const why = err ?? new AgentLinkError('ELINK', 'the link ended');
        void incoming
          .closeAll(why)
          .then(() => Promise.all([outgoing.closeAll(why), unix.closeAll(why)]))
          .then(() => resolve());
      },
    });
  });
}
