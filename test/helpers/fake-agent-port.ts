/**
 * A stand-in for the agent link below the intproxy (src/intproxy/agent-port.ts), for tests and
 * benchmarks that run the real Intproxy without an agent. By default it carries no UDP and no
 * incoming traffic (so those stay local, as the capabilities say), TCP connects fail with
 * ENETUNREACH and requests with ENOSYS; give the parts a test needs.
 */
import type { Duplex } from 'node:stream';
import type { ApMethods, ApOpen } from '../../common/protocol/agent/index.js';
import type { AgentCapabilities, AgentPort } from '../../src/intproxy/agent-port.js';

export interface FakeAgentPortParts {
  capabilities?: Partial<AgentCapabilities>;
  connectTcp?: (host: string, port: number) => Promise<Duplex>;
  connectUdp?: (host: string, port: number) => Promise<Duplex>;
  /** Answers any AP request; the result must be what the method table says for `method`. */
  request?: (method: keyof ApMethods, params: unknown) => Promise<unknown>;
  onIncoming?: (handler: (info: ApOpen, stream: Duplex) => void) => void;
}

const fail = (code: string, message: string) => Promise.reject(Object.assign(new Error(message), { code }));

export function fakeAgentPort(parts: FakeAgentPortParts = {}): AgentPort {
  const request = parts.request ?? ((method: string) => fail('ENOSYS', `unexpected ${method}`));
  return {
    capabilities: { udp: false, incoming: false, ...parts.capabilities },
    connectTcp: parts.connectTcp ?? (() => fail('ENETUNREACH', 'no network here')),
    connectUdp: parts.connectUdp ?? (() => fail('ENETUNREACH', 'no UDP here')),
    request: <M extends keyof ApMethods>(method: M, params: ApMethods[M]['params']) => request(method, params) as Promise<ApMethods[M]['result']>,
    onIncoming: parts.onIncoming ?? (() => undefined),
  };
}
