/**
 * AP's JSON bodies that every method family shares (docs/protocol.md section 2, "Frame"): the
 * handshake (HELLO, HELLO_OK, HELLO_ERR), REQUEST, RESPONSE (JSON or binary form), CLOSE's error,
 * and the link-level methods (env.get, agent.info, agent.sessions).
 */
import { params, type MethodTable } from './params.js';
import { ApKind, badPayload, encodeFrame, isObject, jsonPayload, parseJsonPayload, type ApFrame } from './framing.js';

export interface ApHello {
  version: number;
  token: string;
  client: string;
}
export interface ApHelloOk {
  version: number;
  agent: string;
  targetPid: number;
  /** The agent's own pid in the target's PID namespace (its guard watches it). */
  agentPid?: number;
}
export interface ApErrorBody {
  code: string;
  message: string;
}
export type ApResponse = { ok: true; result: unknown } | { ok: false; error: ApErrorBody };

// ---- methods ------------------------------------------------------------------------------------

export const AP_PRIMITIVE_PARAMS = {
  'env.get': params({}),
  'agent.info': params({}),
  'agent.sessions': params({}),
};

/** One session of an agent as `agent.sessions` (and `mirrord status`) shows it; never its streams or files. */
export interface ApSessionInfo {
  session: string;
  /** The client's name from its HELLO. */
  client: string;
  /** ISO 8601: when it joined. */
  since: string;
  subscriptions: Array<{ port: number; mode: 'mirror' | 'steal'; filter?: string; since: string }>;
}
export type ApPrimitiveMethods = MethodTable<
  typeof AP_PRIMITIVE_PARAMS,
  {
    /** The target process's environment. */
    'env.get': { env: Record<string, string> };
    'agent.info': { version: number; targetPid: number; hostname: string };
    /** The agent's other sessions (a shared agent's; the asking session is left out). */
    'agent.sessions': { sessions: ApSessionInfo[] };
  }
>;

// ---- encoding -----------------------------------------------------------------------------------

export const encodeHello = (h: ApHello) => encodeFrame(ApKind.HELLO, 0, jsonPayload(h));
export const encodeHelloOk = (h: ApHelloOk) => encodeFrame(ApKind.HELLO_OK, 0, jsonPayload(h));
export const encodeHelloErr = (message: string) => encodeFrame(ApKind.HELLO_ERR, 0, jsonPayload({ message }));
export const encodeRequest = (id: number, method: string, params: unknown) => encodeFrame(ApKind.REQUEST, id, jsonPayload({ method, params }));
/**
 * A RESPONSE whose result has a Buffer `data` sends those bytes raw after the JSON (no base64):
 * payload = 0x00, u32 JSON length, JSON (with `"data"` left out and `"$bin": "data"`), the bytes.
 * JSON never starts with 0x00, so the two forms cannot be confused.
 */
export function encodeResponse(id: number, r: ApResponse): Buffer {
  const data = r.ok && isObject(r.result) ? r.result.data : undefined;
  if (!Buffer.isBuffer(data)) return encodeFrame(ApKind.RESPONSE, id, jsonPayload(r));
  const head = jsonPayload({ ok: true, result: { ...(r as { result: object }).result, data: undefined, $bin: 'data' } });
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32LE(head.length, 1);
  return encodeFrame(ApKind.RESPONSE, id, Buffer.concat([prefix, head, data]));
}
export const encodeClose = (stream: number, error?: ApErrorBody) => encodeFrame(ApKind.CLOSE, stream, jsonPayload(error ? { error } : {}));

// ---- decoding (each throws ApProtocolError when the payload is malformed) -----------------------

export function decodeHello(f: ApFrame): ApHello {
  const v = parseJsonPayload(f);
  if (typeof v.version !== 'number' || typeof v.token !== 'string') badPayload(f, 'needs version and token');
  return { version: v.version, token: v.token, client: typeof v.client === 'string' ? v.client : '' };
}

export function decodeHelloOk(f: ApFrame): ApHelloOk {
  const v = parseJsonPayload(f);
  if (typeof v.version !== 'number' || typeof v.targetPid !== 'number') badPayload(f, 'needs version and targetPid');
  const ok: ApHelloOk = { version: v.version, agent: typeof v.agent === 'string' ? v.agent : '', targetPid: v.targetPid };
  if (typeof v.agentPid === 'number') ok.agentPid = v.agentPid;
  return ok;
}

export function decodeHelloErr(f: ApFrame): { message: string } {
  const v = parseJsonPayload(f);
  return { message: typeof v.message === 'string' ? v.message : 'handshake refused' };
}

/** The params are not checked here: the agent checks them against the method's schema (methods.ts). */
export function decodeRequest(f: ApFrame): { method: string; params: unknown } {
  const v = parseJsonPayload(f);
  if (typeof v.method !== 'string') badPayload(f, 'needs a method');
  return { method: v.method, params: v.params ?? {} };
}

function decodeErrorBody(f: ApFrame, e: unknown): ApErrorBody {
  if (!isObject(e) || typeof e.code !== 'string') badPayload(f, 'error needs a code');
  return { code: e.code, message: typeof e.message === 'string' ? e.message : e.code };
}

export function decodeResponse(f: ApFrame): ApResponse {
  if (f.payload.length > 0 && f.payload[0] === 0) {
    if (f.payload.length < 5) badPayload(f, 'binary form needs a JSON length');
    const headLen = f.payload.readUInt32LE(1);
    if (headLen > f.payload.length - 5) badPayload(f, 'JSON length past the end');
    const v = parseJsonPayload({ ...f, payload: f.payload.subarray(5, 5 + headLen) });
    if (v.ok !== true || !isObject(v.result) || v.result.$bin !== 'data') badPayload(f, 'binary form needs ok and $bin');
    const { $bin: _bin, ...result } = v.result;
    return { ok: true, result: { ...result, data: f.payload.subarray(5 + headLen) } };
  }
  const v = parseJsonPayload(f);
  if (v.ok === true) return { ok: true, result: v.result };
  if (v.ok === false) return { ok: false, error: decodeErrorBody(f, v.error) };
  badPayload(f, 'ok must be a boolean');
}

export function decodeClose(f: ApFrame): { error?: ApErrorBody } {
  // An empty payload is accepted as "no error": the doc's `{}` costs nothing to be lenient about.
  if (f.payload.length === 0) return {};
  const v = parseJsonPayload(f);
  return v.error === undefined ? {} : { error: decodeErrorBody(f, v.error) };
}
