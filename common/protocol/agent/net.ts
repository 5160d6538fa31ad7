/**
 * AP's network methods (docs/protocol.md section 2, "Methods"): outgoing connections, DNS, and
 * incoming traffic (subscriptions, and the OPEN frame that carries each incoming connection).
 */
import * as z from 'zod/mini';
import { ApKind, badPayload, encodeFrame, jsonPayload, parseJsonPayload, type ApFrame } from './framing.js';
import { absPath, nonZeroU32, params, port, str, type MethodTable } from './params.js';

export type ApIncomingMode = 'mirror' | 'steal';
const incomingMode = z.enum(['mirror', 'steal'], { error: 'mode must be mirror or steal' });

const filterRegex = (name: string) => z.optional(str(`httpFilter.${name} must be a regex string shorter than 4096 characters`, 0, 4095));
/** A JSONPath query into the request's JSON body and a regex each selected value must match (one is enough). */
const bodyFilter = z.object(
  {
    query: str('httpFilter.body.query must be a JSONPath string shorter than 4096 characters', 1, 4095),
    matches: str('httpFilter.body.matches must be a regex string', 0, 4095),
  },
  { error: 'httpFilter.body must be an object holding query and matches' },
);
/**
 * Regexes (case-insensitive) and a body filter; a request matches when every one that is set
 * matches, and allOf (every one) and anyOf (at least one) nest filters of the same shape.
 */
export interface ApHttpFilter {
  header?: string;
  path?: string;
  method?: string;
  body?: { query: string; matches: string };
  /** A jq expression run on each header ("name: value"); matches when it gives true for one. */
  headerJq?: string;
  allOf?: ApHttpFilter[];
  anyOf?: ApHttpFilter[];
}
const httpFilter: z.ZodMiniType<ApHttpFilter> = z.object(
  {
    header: filterRegex('header'),
    path: filterRegex('path'),
    method: filterRegex('method'),
    body: z.optional(bodyFilter),
    headerJq: z.optional(str('httpFilter.headerJq must be a jq expression shorter than 4096 characters', 1, 4095)),
    get allOf() {
      return z.optional(z.array(httpFilter).check(z.maxLength(64, 'httpFilter.allOf holds at most 64 filters')));
    },
    get anyOf() {
      return z.optional(z.array(httpFilter).check(z.maxLength(64, 'httpFilter.anyOf holds at most 64 filters')));
    },
  },
  { error: 'httpFilter must be an object holding header, path, method, body, headerJq, allOf and anyOf' },
);

export const AP_NET_PARAMS = {
  /** host: an IP literal (the agent says EINVAL otherwise). `udp`: each DATA frame is one datagram, both ways. */
  'outgoing.connect': params({
    stream: nonZeroU32('stream'),
    host: z.string({ error: 'host must be a string' }),
    port: port(),
    protocol: z.optional(z.enum(['tcp', 'udp'], { error: 'protocol must be tcp or udp' })),
  }),
  /** A unix stream socket's connection to `path` in the target's file system (feature.network.outgoing.unix_streams). */
  'outgoing.connect_unix': params({ stream: nonZeroU32('stream'), path: absPath('path') }),
  'dns.lookup': params({
    name: str('name must be a non-empty string of at most 1024 characters', 1, 1024),
    family: z.literal([0, 4, 6], { error: 'family must be 0, 4 or 6' }),
  }),
  /**
   * `onConcurrentSteal`: what an unfiltered steal does when another session of the same agent
   * steals the port (abort, the default: EBUSY naming it; continue: share, it gets what no filter
   * takes; override: it takes the port while it holds it).
   */
  'incoming.subscribe': params({
    port: port(),
    mode: incomingMode,
    httpFilter: z.optional(httpFilter),
    onConcurrentSteal: z.optional(z.enum(['abort', 'continue', 'override'], { error: 'onConcurrentSteal must be abort, continue or override' })),
    /** The session can take connections itself (docs/fast-path.md): OPENs may carry `handover`. */
    handover: z.optional(z.boolean({ error: 'handover must be a boolean' })),
  }),
  'incoming.unsubscribe': params({ port: port() }),
  /** The connection of an OPEN with `handover` (that stream id) goes over the stream after all. */
  'incoming.stream': params({ stream: nonZeroU32('stream') }),
};

export interface ApDnsAddress {
  address: string;
  family: 4 | 6;
}

export type ApNetMethods = MethodTable<
  typeof AP_NET_PARAMS,
  {
    /** The agent side's socket. */
    'outgoing.connect': { localAddress: string; localPort: number };
    'outgoing.connect_unix': Record<string, never>;
    'dns.lookup': { addresses: ApDnsAddress[]; canonname: string };
    'incoming.subscribe': { port: number; backend: string };
    'incoming.unsubscribe': Record<string, never>;
    'incoming.stream': Record<string, never>;
  }
>;

// ---- OPEN: agent -> client, a new agent-initiated stream (even id) for one incoming connection --

/** What an OPEN frame says about the incoming connection it carries. */
export interface ApOpen {
  port: number;
  mode: ApIncomingMode;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /**
   * The fast path: the connection waits in the socket helper under this one-time id for the
   * session's program to take it; the agent sends nothing on the stream until it is taken (CLOSE)
   * or the client asks `incoming.stream`.
   */
  handover?: string;
}

export const encodeOpen = (stream: number, o: ApOpen) => encodeFrame(ApKind.OPEN, stream, jsonPayload(o));

export function decodeOpen(f: ApFrame): ApOpen {
  const v = parseJsonPayload(f);
  const isPort = (x: unknown) => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= 65535;
  if (!isPort(v.port) || (v.mode !== 'mirror' && v.mode !== 'steal')) badPayload(f, 'needs port and mode');
  const text = (x: unknown) => (typeof x === 'string' ? x : '');
  const num = (x: unknown) => (Number.isInteger(x) ? (x as number) : 0);
  return {
    port: v.port as number,
    mode: v.mode,
    remoteAddress: text(v.remoteAddress),
    remotePort: num(v.remotePort),
    localAddress: text(v.localAddress),
    localPort: num(v.localPort),
    ...(typeof v.handover === 'string' && v.handover ? { handover: v.handover } : {}),
  };
}
