/**
 * LP, the layer <-> intproxy protocol (docs/protocol.md section 1), by family: codec (frames and
 * primitives), net (connect, getaddrinfo, listening sockets), fs (remote files), messages (HELLO,
 * the unions and the codec entry points). Pure codec, no I/O. The protocol version is
 * common/version.ts's LP_VERSION.
 */
export { LP_MAX_FRAME, LpFrameReader, LpProtocolError, LpStatus, type LpAddr, type LpFrame } from './codec.js';
export { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type LpHello, type LpRequest, type LpResponse } from './messages.js';
export type { NetRequest, NetResponse } from './net.js';
export {
  FS_APPEND,
  FS_MAX_IO,
  FS_STAT_SIZE,
  FS_TYPES,
  FS_ZERO_STAT,
  decodeFsRequest,
  decodeFsResponse,
  encodeFsRequest,
  encodeFsResponse,
  isFsType,
  type FsDirent,
  type FsKind,
  type FsRequest,
  type FsResponse,
} from './fs.js';
export { fileStatSchema, type FileStat } from '../stat.js';
