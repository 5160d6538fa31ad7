/**
 * The intproxy's side of the AP link (docs/protocol.md section 2): handshake, typed requests,
 * TCP streams, heartbeats. Modelled on vscode-js-debug's src/cdp/connection.ts: every pending
 * request remembers where it was asked from, and every one of them fails when the link goes.
 */
import type { Duplex } from 'node:stream';
import {
  AP_INITIAL_WINDOW,
  ApKind,
  apKindName,
  decodeClose,
  decodeCredit,
  decodeHelloErr,
  decodeHelloOk,
  decodeOpen,
  decodeResponse,
  encodeClose,
  encodeCredit,
  encodeHello,
  encodeRequest,
  type ApFrame,
  type ApMethods,
  type ApOpen,
} from '../../common/protocol/agent/index.js';
import { AP_CLIENT, AP_VERSION } from '../../common/version.js';
import type { Logger } from '../../common/log.js';
import type { AgentCapabilities, AgentPort } from '../intproxy/agent-port.js';
import { AgentLinkError } from '../../common/link/errors.js';
import { FramedLink } from '../../common/link/framed-link.js';
import { ApStream } from '../../common/link/stream.js';

export type { ApStream } from '../../common/link/stream.js';

export { AgentLinkError } from '../../common/link/errors.js';

export interface AgentConnectionOptions {
  token: string;
  client?: string;
  heartbeatMs?: number;
  deadAfterMs?: number;
  handshakeTimeoutMs?: number;
  /** Default timeout of a request, unless the call gives its own. */
  requestTimeoutMs?: number;
  /**
   * The window this end grants each TCP stream the agent sends on (AP_INITIAL_WINDOW unless larger:
   * the rest goes as one CREDIT once the stream is connected). The Kubernetes link's platform sets it.
   */
  streamWindow?: number;
  log?: Logger;
}

export interface AgentInfo {
  version: number;
  agent: string;
  targetPid: number;
  /** The agent's pid in the target's PID namespace, when it says. */
  agentPid?: number;
}

/** Takes an incoming connection the agent opened (OPEN); the stream is the connection's bytes. */
export type IncomingHandler = (info: ApOpen, stream: ApStream) => void;

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

interface Pending {
  method: string;
  site: Error;
  timer: NodeJS.Timeout;
  resolve: (v: unknown) => void;
  reject: (e: AgentLinkError) => void;
}

type Phase =
  | { name: 'handshake'; resolve: (info: AgentInfo) => void; reject: (e: AgentLinkError) => void }
  | { name: 'open' }
  | { name: 'closed'; err?: AgentLinkError };

export class AgentConnection implements AgentPort {
  /** This link carries UDP flows and incoming connections (the intproxy's agent port). */
  readonly capabilities: AgentCapabilities = { udp: true, incoming: true };
  private readonly link: FramedLink;
  private phase: Phase;
  private nextRequestId = 1;
  /** Client streams are odd (docs/protocol.md). */
  private nextStreamId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly streams = new Map<number, ApStream>();
  private readonly closeListeners: ((err?: AgentLinkError) => void)[] = [];
  private agentInfo: AgentInfo = { version: 0, agent: '', targetPid: 0 };
  private incomingHandler: IncomingHandler | undefined;

  static connect(link: Duplex, opts: AgentConnectionOptions): Promise<AgentConnection> {
    const site = new Error();
    return new Promise((resolve, reject) => {
      const conn = new AgentConnection(link, opts, {
        name: 'handshake',
        resolve: () => resolve(conn),
        reject: (e) => reject(AgentLinkError.at(site, e.code, e.message, e.cause)),
      });
    });
  }

  private constructor(
    stream: Duplex,
    private readonly opts: AgentConnectionOptions,
    handshake: Phase & { name: 'handshake' },
  ) {
    this.phase = handshake;
    this.link = new FramedLink(stream, {
      heartbeatMs: opts.heartbeatMs,
      deadAfterMs: opts.deadAfterMs,
      log: opts.log,
      onFrame: (f) => this.onFrame(f),
      onData: (channel, pieces, length) => {
        if (this.phase.name === 'handshake') throw new Error('DATA before HELLO_OK');
        this.streams.get(channel)?.onData(pieces, length);
      },
      onClose: (err) => this.onLinkClosed(err),
    });
    const timer = setTimeout(() => {
      const ms = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      this.link.destroy(new AgentLinkError('EHANDSHAKE', `the agent did not answer the handshake within ${ms} ms`));
    }, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
    const settle =
      <T>(fn: (v: T) => void) =>
      (v: T) => {
        clearTimeout(timer);
        fn(v);
      };
    this.phase = { name: 'handshake', resolve: settle(handshake.resolve), reject: settle(handshake.reject) };
    this.link.send(encodeHello({ version: AP_VERSION, token: opts.token, client: opts.client ?? AP_CLIENT }));
  }

  get info(): AgentInfo {
    return this.agentInfo;
  }

  get closed(): boolean {
    return this.phase.name === 'closed';
  }

  onClose(cb: (err?: AgentLinkError) => void): void {
    if (this.phase.name === 'closed') {
      const err = this.phase.err;
      queueMicrotask(() => cb(err));
    } else {
      this.closeListeners.push(cb);
    }
  }

  request<M extends keyof ApMethods>(method: M, params: ApMethods[M]['params'], opts?: { timeoutMs?: number }): Promise<ApMethods[M]['result']> {
    const site = new Error();
    if (this.phase.name !== 'open') {
      const why = this.phase.name === 'closed' ? (this.phase.err?.message ?? 'the agent link is closed') : 'handshake not done';
      return Promise.reject(AgentLinkError.at(site, 'ELINK', `${method}: ${why}`));
    }
    const id = this.nextRequestId++;
    const timeoutMs = opts?.timeoutMs ?? this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    return new Promise<ApMethods[M]['result']>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(AgentLinkError.at(site, 'ETIMEDOUT', `${method}: no answer from the agent within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, site, timer, resolve: resolve as (v: unknown) => void, reject });
      this.link.send(encodeRequest(id, method, params));
    });
  }

  /**
   * Opens a TCP connection from the agent's (= the target's) network namespace. The Duplex is the
   * connection: end() half-closes it, destroy() closes it.
   */
  async connectTcp(host: string, port: number, opts?: { timeoutMs?: number }): Promise<ApStream> {
    return this.connectStream(host, port, 'tcp', opts);
  }

  /** A UDP "connection" from the target's namespace: each write and each 'data' chunk is one datagram. */
  async connectUdp(host: string, port: number, opts?: { timeoutMs?: number }): Promise<ApStream> {
    return this.connectStream(host, port, 'udp', opts);
  }

  /** A connection to the unix stream socket at `path` inside the target (its mount namespace). */
  async connectUnix(path: string, opts?: { timeoutMs?: number }): Promise<ApStream> {
    return this.connectStream(path, 0, 'unix', opts);
  }

  private async connectStream(host: string, port: number, protocol: 'tcp' | 'udp' | 'unix', opts?: { timeoutMs?: number }): Promise<ApStream> {
    const id = this.nextStreamId;
    this.nextStreamId = (this.nextStreamId + 2) >>> 0 || 1;
    // Registered before asking: DATA may follow the RESPONSE at once.
    const stream = new ApStream(
      id,
      (f, payload) => this.link.send(f, payload),
      (s) => this.forgetStream(s),
    );
    // An error nobody listens for must not take the intproxy down; it stays readable on .errored.
    stream.on('error', () => undefined);
    stream.datagram = protocol === 'udp';
    this.streams.set(id, stream);
    try {
      if (protocol === 'unix') await this.request('outgoing.connect_unix', { stream: id, path: host }, opts);
      else stream.agentSocket = await this.request('outgoing.connect', { stream: id, host, port, ...(protocol === 'udp' ? { protocol } : {}) }, opts);
      const extra = (this.opts.streamWindow ?? 0) - AP_INITIAL_WINDOW;
      if (extra > 0 && protocol !== 'udp') this.link.send(encodeCredit(id, extra));
      return stream;
    } catch (err) {
      // The agent has no such stream; our CLOSE also cancels a connect that is still in progress there.
      stream.destroy();
      throw err;
    }
  }

  /** Where incoming connections (agent-opened streams) go; without a handler they are refused. */
  onIncoming(handler: IncomingHandler): void {
    this.incomingHandler = handler;
  }

  close(): void {
    if (this.phase.name === 'closed') return;
    this.link.end();
  }

  // ---- internals ----

  private forgetStream(s: ApStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
  }

  private onFrame(f: ApFrame): void {
    const phase = this.phase;
    if (phase.name === 'handshake') {
      if (f.kind === ApKind.HELLO_OK) {
        const ok = decodeHelloOk(f);
        if (ok.version !== AP_VERSION) {
          this.link.destroy(new AgentLinkError('EHANDSHAKE', `the agent speaks protocol ${ok.version}, we speak ${AP_VERSION}`));
          return;
        }
        this.agentInfo = { version: ok.version, agent: ok.agent, targetPid: ok.targetPid, agentPid: ok.agentPid };
        this.phase = { name: 'open' };
        this.link.startHeartbeat();
        phase.resolve(this.agentInfo);
      } else if (f.kind === ApKind.HELLO_ERR) {
        this.link.destroy(new AgentLinkError('EHANDSHAKE', `the agent refused the handshake: ${decodeHelloErr(f).message}`));
      } else {
        throw new Error(`${apKindName(f.kind)} before HELLO_OK`);
      }
      return;
    }
    switch (f.kind) {
      case ApKind.RESPONSE: {
        const p = this.pending.get(f.channel);
        if (!p) {
          this.opts.log?.debug(`response to unknown or timed-out request ${f.channel}`);
          return;
        }
        this.pending.delete(f.channel);
        clearTimeout(p.timer);
        const r = decodeResponse(f);
        if (r.ok) p.resolve(r.result);
        else p.reject(AgentLinkError.at(p.site, r.error.code, `${p.method}: ${r.error.message}`));
        return;
      }
      case ApKind.OPEN: {
        const info = decodeOpen(f);
        if (f.channel % 2 !== 0 || this.streams.has(f.channel) || !this.incomingHandler) {
          this.link.send(encodeClose(f.channel, { code: 'ECONNREFUSED', message: 'no listener for incoming connections' }));
          return;
        }
        const stream = new ApStream(
          f.channel,
          (fr, payload) => this.link.send(fr, payload),
          (st) => this.forgetStream(st),
        );
        stream.on('error', () => undefined);
        this.streams.set(f.channel, stream);
        this.incomingHandler(info, stream);
        return;
      }
      case ApKind.EOF:
        this.streams.get(f.channel)?.onEof();
        return;
      case ApKind.CREDIT: {
        const n = decodeCredit(f);
        this.streams.get(f.channel)?.onCredit(n);
        return;
      }
      case ApKind.CLOSE: {
        const { error } = decodeClose(f);
        this.streams.get(f.channel)?.onClose(error);
        return;
      }
      default:
        throw new Error(`unexpected ${apKindName(f.kind)} from the agent`);
    }
  }

  private onLinkClosed(err?: AgentLinkError): void {
    const phase = this.phase;
    if (phase.name === 'closed') return;
    this.phase = { name: 'closed', err };
    this.opts.log?.debug(`agent link closed${err ? `: ${err.message}` : ''}`);
    if (phase.name === 'handshake') {
      phase.reject(err?.code === 'EHANDSHAKE' ? err : new AgentLinkError('EHANDSHAKE', `link closed during the handshake${err ? `: ${err.message}` : ''}`));
    }
    const why = err?.message ?? 'the agent link was closed';
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(AgentLinkError.at(p.site, 'ELINK', `${p.method}: ${why}`, err));
    }
    for (const s of [...this.streams.values()]) s.linkLost(new AgentLinkError('ELINK', why, { cause: err }));
    this.streams.clear();
    for (const cb of this.closeListeners.splice(0)) cb(err);
  }
}
