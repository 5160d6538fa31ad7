/**
 * AP, the intproxy <-> agent wire format (docs/protocol.md section 2), by family: framing (kinds,
 * header, reader, binary frames), primitives (handshake, request/response, close, link methods), net
 * and fs (their methods and params schemas), methods (the table and its param checks). The protocol
 * version is common/version.ts's AP_VERSION.
 */
export {
  AP_HEADER_SIZE,
  AP_INITIAL_WINDOW,
  AP_KUBE_STREAM_WINDOW,
  AP_LISTENER_BANNER,
  AP_JOINED_LINE,
  AP_JOIN_LEAVING,
  AP_MAX_DATA_CHUNK,
  AP_MAX_PAYLOAD,
  ApFrameReader,
  ApKind,
  ApProtocolError,
  apKindName,
  decodeCredit,
  decodePing,
  encodeCredit,
  encodeData,
  encodeEof,
  encodeFrame,
  encodeHeader,
  encodePing,
  encodePong,
  type ApFrame,
  type ApKindValue,
} from './framing.js';
export {
  decodeClose,
  decodeHello,
  decodeHelloErr,
  decodeHelloOk,
  decodeRequest,
  decodeResponse,
  encodeClose,
  encodeHello,
  encodeHelloErr,
  encodeHelloOk,
  encodeRequest,
  encodeResponse,
  type ApErrorBody,
  type ApHello,
  type ApHelloOk,
  type ApPrimitiveMethods,
  type ApResponse,
  type ApSessionInfo,
} from './primitives.js';
export { decodeOpen, encodeOpen, type ApDnsAddress, type ApHttpFilter, type ApIncomingMode, type ApNetMethods, type ApOpen } from './net.js';
export { AP_FS_MAX_READ, type ApDirent, type ApFileMethods } from './fs.js';
export { AP_PARAM_CHECKS, AP_PARAM_SCHEMAS, isApMethod, parseApParams, type ApMethod, type ApMethods, type ApParamsParse } from './methods.js';
export { fileStatSchema, type FileStat } from '../stat.js';
