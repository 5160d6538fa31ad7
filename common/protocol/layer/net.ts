/**
 * LP's network messages (docs/protocol.md section 1, "Messages"): CONNECT (2), GETADDRINFO (3), and
 * listening sockets, 0x10..0x1f: LISTEN, ACCEPT, UNLISTEN; and CONNECT_UNIX (0x13), a unix stream
 * socket's connect to a path (feature.network.outgoing.unix_streams); ACCEPT_TAKE (0x14), an ACCEPT
 * from a layer that can take the stolen connection itself (docs/fast-path.md).
 */
import { LpProtocolError, LpStatus, RESPONSE, Reader, Writer, addrBytes, addrText, type LpAddr, type LpFrame } from './codec.js';

export const NET_TYPES = { connect: 2, getaddrinfo: 3, listen: 0x10, accept: 0x11, unlisten: 0x12, connect_unix: 0x13, accept_take: 0x14 } as const;
type NetKind = keyof typeof NET_TYPES;
const NET_KIND_OF = new Map<number, NetKind>(Object.entries(NET_TYPES).map(([k, v]) => [v, k as NetKind]));

export type NetRequest =
  /** takeSocket: the layer can take a socket made in the target (fd passing) instead of a stream. */
  | { id: number; kind: 'connect'; proto: 'tcp' | 'udp'; remote: LpAddr; takeSocket?: boolean }
  | { id: number; kind: 'getaddrinfo'; node: string; family: 0 | 2 | 10 }
  | { id: number; kind: 'listen'; requested: LpAddr; bound: LpAddr }
  | { id: number; kind: 'accept'; peer: LpAddr }
  /** As accept; the layer can take the connection from the socket helper (fd passing). */
  | { id: number; kind: 'accept_take'; peer: LpAddr }
  | { id: number; kind: 'unlisten'; requested: LpAddr }
  /** path: what the program passed to connect() (sun_path, without the trailing NUL). */
  | { id: number; kind: 'connect_unix'; path: string };

export type NetResponse =
  | { id: number; kind: 'connect'; status: number; via: LpAddr }
  | { id: number; kind: 'getaddrinfo'; status: number; addresses: { family: 4 | 6; address: string }[]; canonname: string }
  | { id: number; kind: 'listen' | 'unlisten'; status: number }
  | { id: number; kind: 'accept'; status: number; remote: LpAddr }
  /** take: with status TakeSocket, the helper's one-time id of the connection (else empty). */
  | { id: number; kind: 'accept_take'; status: number; remote: LpAddr; take: string }
  /** via: the local path the program's socket connects to instead (only with status Ok). */
  | { id: number; kind: 'connect_unix'; status: number; via: string };

/** A request type of this family (not a response). */
export function isNetType(type: number): boolean {
  return NET_KIND_OF.has(type);
}

const NO_ADDR: LpAddr = { family: 4, address: '0.0.0.0', port: 0 };
/** CONNECT's proto byte: this bit says the layer can take a socket (docs/fast-path.md). */
const TAKE_SOCKET_BIT = 0x80;

export function encodeNetRequest(r: NetRequest): Buffer {
  const w = new Writer();
  switch (r.kind) {
    case 'connect':
      w.u8((r.proto === 'tcp' ? 1 : 2) | (r.takeSocket ? TAKE_SOCKET_BIT : 0)).addr(r.remote);
      break;
    case 'getaddrinfo':
      w.str(r.node).i32(r.family);
      break;
    case 'listen':
      w.addr(r.requested).addr(r.bound);
      break;
    case 'accept':
    case 'accept_take':
      w.addr(r.peer);
      break;
    case 'unlisten':
      w.addr(r.requested);
      break;
    case 'connect_unix':
      w.str(r.path);
      break;
  }
  return w.frame(r.id, NET_TYPES[r.kind]);
}

export function encodeNetResponse(r: NetResponse): Buffer {
  const w = new Writer().i32(r.status);
  switch (r.kind) {
    case 'connect':
      // Only a handled connect has a meaningful `via` (for TakeSocket: where the taken socket
      // connects): anything else is sent as zeros.
      w.addr(r.status === LpStatus.Ok || r.status === LpStatus.TakeSocket ? r.via : NO_ADDR);
      break;
    case 'getaddrinfo':
      w.u16(r.addresses.length);
      for (const a of r.addresses) w.u8(a.family).bytes(addrBytes(a.family, a.address));
      w.str(r.canonname);
      break;
    case 'accept':
      w.addr(r.status === LpStatus.Ok ? r.remote : NO_ADDR);
      break;
    case 'accept_take':
      w.addr(r.status === LpStatus.Ok || r.status === LpStatus.TakeSocket ? r.remote : NO_ADDR);
      w.str(r.status === LpStatus.TakeSocket ? r.take : '');
      break;
    case 'connect_unix':
      w.str(r.status === LpStatus.Ok ? r.via : '');
      break;
    default:
      break;
  }
  return w.frame(r.id, NET_TYPES[r.kind] | RESPONSE);
}

export function decodeNetRequest(f: LpFrame): NetRequest {
  const kind = NET_KIND_OF.get(f.type);
  if (!kind) throw new LpProtocolError(`unknown request type 0x${f.type.toString(16)}`);
  const r = new Reader(f.payload);
  const id = f.id;
  let out: NetRequest;
  switch (kind) {
    case 'connect': {
      const byte = r.u8();
      const p = byte & ~TAKE_SOCKET_BIT;
      if (p !== 1 && p !== 2) throw new LpProtocolError(`unknown connect proto ${byte}`);
      out = { id, kind, proto: p === 1 ? 'tcp' : 'udp', remote: r.addr(), ...(byte & TAKE_SOCKET_BIT ? { takeSocket: true } : {}) };
      break;
    }
    case 'getaddrinfo': {
      const node = r.str();
      const family = r.i32();
      if (family !== 0 && family !== 2 && family !== 10) throw new LpProtocolError(`unknown family ${family}`);
      out = { id, kind, node, family };
      break;
    }
    case 'listen':
      out = { id, kind, requested: r.addr(), bound: r.addr() };
      break;
    case 'accept':
    case 'accept_take':
      out = { id, kind, peer: r.addr() };
      break;
    case 'unlisten':
      out = { id, kind, requested: r.addr() };
      break;
    case 'connect_unix':
      out = { id, kind, path: r.str() };
      break;
  }
  r.end();
  return out;
}

export function decodeNetResponse(f: LpFrame): NetResponse {
  const kind = NET_KIND_OF.get(f.type & ~RESPONSE);
  if (!kind || !(f.type & RESPONSE)) throw new LpProtocolError(`unknown response type 0x${f.type.toString(16)}`);
  const r = new Reader(f.payload);
  const id = f.id;
  let out: NetResponse;
  switch (kind) {
    case 'connect':
      out = { id, kind, status: r.i32(), via: r.addr() };
      break;
    case 'getaddrinfo': {
      const status = r.i32();
      const count = r.u16();
      const addresses: { family: 4 | 6; address: string }[] = [];
      for (let i = 0; i < count; i++) {
        const family = r.family();
        addresses.push({ family, address: addrText(family, r.bytes(16)) });
      }
      out = { id, kind, status, addresses, canonname: r.str() };
      break;
    }
    case 'listen':
    case 'unlisten':
      out = { id, kind, status: r.i32() };
      break;
    case 'accept':
      out = { id, kind, status: r.i32(), remote: r.addr() };
      break;
    case 'accept_take':
      out = { id, kind, status: r.i32(), remote: r.addr(), take: r.str() };
      break;
    case 'connect_unix':
      out = { id, kind, status: r.i32(), via: r.str() };
      break;
  }
  r.end();
  return out;
}
