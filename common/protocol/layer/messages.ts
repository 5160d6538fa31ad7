/**
 * LP messages as a whole (docs/protocol.md section 1): HELLO, which opens every connection, and the
 * request/response unions of every family, with the codec entry points that dispatch by type.
 * The C side (layer/src/lp_codec.c) is tested against the same vectors
 * (test/vectors/layer-protocol.json), so a change here needs a matching change there.
 */
import { LpProtocolError, RESPONSE, Reader, Writer, type LpFrame } from './codec.js';
import { FS_TYPES, decodeFsRequest, decodeFsResponse, encodeFsRequest, encodeFsResponse, isFsType, type FsRequest, type FsResponse } from './fs.js';
import { NET_TYPES, decodeNetRequest, decodeNetResponse, encodeNetRequest, encodeNetResponse, isNetType, type NetRequest, type NetResponse } from './net.js';

const T_HELLO = 1;
/** ENV (0x30): the program's environment, for feature.env.load_from_process. */
const T_ENV = 0x30;
const ENV_SET = 1;
const ENV_UNSET = 2;

/** version: common/version.ts's LP_VERSION. parentPid: the process this one was forked from (0: none). */
export type LpHello = { id: number; kind: 'hello'; version: number; pid: number; ppid: number; parentPid: number; exe: string };

/** start: the index of the first entry wanted (the layer pages through a long list). */
export type LpEnvRequest = { id: number; kind: 'env'; start: number };
/**
 * status 0: `entries` from `start` on, of `total` in all (value undefined: unset the name);
 * status 1: nothing to apply (the session fetched none, or an earlier process took it).
 */
export type LpEnvResponse = { id: number; kind: 'env'; status: number; total: number; entries: { name: string; value?: string }[] };

export type LpRequest = FsRequest | NetRequest | LpHello | LpEnvRequest;
export type LpResponse = FsResponse | NetResponse | { id: number; kind: 'hello'; status: number } | LpEnvResponse;

export function encodeRequest(r: LpRequest): Buffer {
  if (r.kind === 'hello') return new Writer().u16(r.version).u32(r.pid).u32(r.ppid).u32(r.parentPid).str(r.exe).frame(r.id, T_HELLO);
  if (r.kind === 'env') return new Writer().u32(r.start).frame(r.id, T_ENV);
  if (r.kind in NET_TYPES) return encodeNetRequest(r as NetRequest);
  if (r.kind in FS_TYPES) return encodeFsRequest(r as FsRequest);
  throw new LpProtocolError(`unknown request kind ${(r as { kind: string }).kind}`);
}

export function encodeResponse(r: LpResponse): Buffer {
  if (r.kind === 'hello') return new Writer().i32(r.status).frame(r.id, T_HELLO | RESPONSE);
  if (r.kind === 'env') {
    const w = new Writer().i32(r.status).u32(r.total).u16(r.entries.length);
    for (const e of r.entries)
      w.u8(e.value === undefined ? ENV_UNSET : ENV_SET)
        .str(e.name)
        .str(e.value ?? '');
    return w.frame(r.id, T_ENV | RESPONSE);
  }
  if (r.kind in NET_TYPES) return encodeNetResponse(r as NetResponse);
  if (r.kind in FS_TYPES) return encodeFsResponse(r as FsResponse);
  throw new LpProtocolError(`unknown response kind ${(r as { kind: string }).kind}`);
}

export function decodeRequest(f: LpFrame): LpRequest {
  if (f.type === T_HELLO) {
    const r = new Reader(f.payload);
    const out: LpHello = { id: f.id, kind: 'hello', version: r.u16(), pid: r.u32(), ppid: r.u32(), parentPid: r.u32(), exe: r.str() };
    r.end();
    return out;
  }
  if (f.type === T_ENV) {
    const r = new Reader(f.payload);
    const out: LpEnvRequest = { id: f.id, kind: 'env', start: r.u32() };
    r.end();
    return out;
  }
  if (isNetType(f.type)) return decodeNetRequest(f);
  if (isFsType(f.type)) return decodeFsRequest(f);
  throw new LpProtocolError(`unknown request type 0x${f.type.toString(16)}`);
}

export function decodeResponse(f: LpFrame): LpResponse {
  if (f.type === (T_HELLO | RESPONSE)) {
    const r = new Reader(f.payload);
    const out = { id: f.id, kind: 'hello' as const, status: r.i32() };
    r.end();
    return out;
  }
  if (f.type === (T_ENV | RESPONSE)) {
    const r = new Reader(f.payload);
    const status = r.i32();
    const total = r.u32();
    const count = r.u16();
    const entries: { name: string; value?: string }[] = [];
    for (let i = 0; i < count; i++) {
      const op = r.u8();
      const name = r.str();
      const value = r.str();
      if (op !== ENV_SET && op !== ENV_UNSET) throw new LpProtocolError(`unknown env entry op ${op}`);
      entries.push(op === ENV_SET ? { name, value } : { name });
    }
    r.end();
    return { id: f.id, kind: 'env', status, total, entries };
  }
  if (f.type & RESPONSE && isNetType(f.type & ~RESPONSE)) return decodeNetResponse(f);
  if (isFsType(f.type)) return decodeFsResponse(f);
  throw new LpProtocolError(`unknown response type 0x${f.type.toString(16)}`);
}
