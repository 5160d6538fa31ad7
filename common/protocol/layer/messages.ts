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

/** version: common/version.ts's LP_VERSION. parentPid: the process this one was forked from (0: none). */
export type LpHello = { id: number; kind: 'hello'; version: number; pid: number; ppid: number; parentPid: number; exe: string };

export type LpRequest = FsRequest | NetRequest | LpHello;
export type LpResponse = FsResponse | NetResponse | { id: number; kind: 'hello'; status: number };

export function encodeRequest(r: LpRequest): Buffer {
  if (r.kind === 'hello') return new Writer().u16(r.version).u32(r.pid).u32(r.ppid).u32(r.parentPid).str(r.exe).frame(r.id, T_HELLO);
  if (r.kind in NET_TYPES) return encodeNetRequest(r as NetRequest);
  if (r.kind in FS_TYPES) return encodeFsRequest(r as FsRequest);
  throw new LpProtocolError(`unknown request kind ${(r as { kind: string }).kind}`);
}

export function encodeResponse(r: LpResponse): Buffer {
  if (r.kind === 'hello') return new Writer().i32(r.status).frame(r.id, T_HELLO | RESPONSE);
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
  if (f.type & RESPONSE && isNetType(f.type & ~RESPONSE)) return decodeNetResponse(f);
  if (isFsType(f.type)) return decodeFsResponse(f);
  throw new LpProtocolError(`unknown response type 0x${f.type.toString(16)}`);
}
