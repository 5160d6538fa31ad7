/**
 * What a mirroring session gets of one captured connection (tcp-reassembly.ts rebuilds its bytes):
 * without a filter, the client's bytes as they came; with an HTTP filter, only the requests that
 * match (per request on HTTP/1.x, per stream on h2c), each sent to the local program as a request
 * of its own. The local program's answers are read and dropped: the client already has the
 * target's.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { ApStream } from '../../../common/link/stream.js';
import type { Logger } from '../../../common/log.js';
import { jqExpressions, jqFor, matchesRequest, needsBody, readBodyForFilter, type CompiledFilter } from './http-filter.js';
import type { FlowSink } from './tcp-reassembly.js';

/** A copy may lag this far behind the real traffic before it is dropped. */
export const MIRROR_MAX_LAG = 4 * 1024 * 1024;

const H2_PREFACE = 'PRI * HTTP/2.0';

export interface CopyTarget {
  session: string;
  filter?: CompiledFilter;
  /** A new stream to the session's local program. */
  open(): ApStream;
}

/**
 * The raw bytes to one stream, dropped (not buffered without end) when the local side is too slow.
 * The segments of one batch of packets (one read of the capture's output) go out as one write, so
 * one link frame carries every request of a connection that the capture delivered together.
 */
function rawCopy(to: CopyTarget, what: string, log?: Logger): FlowSink {
  let copy: ApStream | undefined = to.open();
  let parts: Buffer[] = [];
  copy.resume();
  const gone = () => {
    copy = undefined;
    parts = [];
  };
  copy.once('error', gone);
  copy.once('close', gone);
  const flush = () => {
    if (!copy || parts.length === 0) return;
    const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    parts = [];
    if (copy.writableLength > MIRROR_MAX_LAG) {
      log?.debug(`mirror copy of ${what} for ${to.session} fell behind; dropped`);
      copy.destroy();
      return gone();
    }
    copy.write(chunk);
  };
  return {
    data(chunk) {
      if (copy && parts.push(chunk) === 1) queueMicrotask(flush);
    },
    end() {
      flush();
      copy?.end();
    },
    abort(reason) {
      log?.debug(`mirror copy of ${what} for ${to.session} ends early: ${reason}`);
      parts = [];
      copy?.destroy();
    },
  };
}

/**
 * The rebuilt bytes as a socket for Node's HTTP parser (keep-alive, pipelining, chunked bodies);
 * what the parser's server writes back is discarded.
 */
function parserSocket(): Duplex & { feed(chunk: Buffer | null): void } {
  const d = new Duplex({
    read() {},
    write(_chunk, _enc, cb) {
      cb();
    },
  }) as Duplex & { feed(chunk: Buffer | null): void };
  d.feed = (chunk) => void d.push(chunk);
  // What http.Server calls on a net.Socket.
  Object.assign(d, { setTimeout: () => d, setNoDelay: () => d, setKeepAlive: () => d, remoteAddress: '0.0.0.0' });
  return d;
}

/** HTTP/1.x: each matching request re-sent to the local program as a request of its own, in order. */
function serveH1Copy(socket: Duplex, to: CopyTarget, filter: CompiledFilter, log?: Logger): void {
  const withBody = needsBody(filter);
  const server = http.createServer({ keepAliveTimeout: 0 }, (req, res) => void handle(req, res));
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const pre = withBody ? await readBodyForFilter(req) : undefined;
    const jq = await jqFor(jqExpressions([filter]), req.rawHeaders);
    if (!matchesRequest(filter, { method: req.method ?? 'GET', path: req.url ?? '/', rawHeaders: req.rawHeaders, body: pre?.body, jq })) {
      if (pre?.ended) return void res.end();
      req.resume();
      req.on('end', () => res.end());
      return;
    }
    log?.debug(`mirror ${req.method} ${req.url} -> session ${to.session}`);
    const headers: string[] = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      if (!/^(connection|keep-alive)$/i.test(req.rawHeaders[i]!)) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    }
    const up = http.request({
      method: req.method,
      path: req.url,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      setHost: false,
      createConnection: () => to.open() as unknown as net.Socket,
    });
    const done = () => res.end();
    up.on('response', (r) => r.resume().on('end', done));
    up.on('error', (err) => {
      log?.debug(`mirrored request to ${to.session} failed: ${err.message}`);
      done();
    });
    for (const chunk of pre?.chunks ?? []) up.write(chunk);
    if (pre?.ended) up.end();
    else req.pipe(up);
  };
  server.on('clientError', (_err, s) => s.destroy());
  server.emit('connection', socket);
}

/**
 * h2c: the client's frames, read by an HTTP/2 server whose own frames go nowhere; each matching
 * stream is re-sent on one h2c connection to the local program. The client's flow control follows
 * the real application's windows: a copy that overruns ours ends (the real traffic never notices).
 */
function serveH2Copy(socket: Duplex, to: CopyTarget, filter: CompiledFilter, what: string, log?: Logger): void {
  const withBody = needsBody(filter);
  const server = http2.createServer();
  let local: http2.ClientHttp2Session | undefined;
  const session = () => {
    if (!local || local.destroyed) {
      local = http2.connect('http://local', { createConnection: () => to.open() as unknown as net.Socket });
      local.on('error', (err) => log?.debug(`mirrored h2c to ${to.session} failed: ${err.message}`));
    }
    return local;
  };
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    void (async () => {
      stream.on('error', () => undefined);
      const pre = withBody ? await readBodyForFilter(stream) : undefined;
      const method = String(headers[':method'] ?? 'GET');
      const path = String(headers[':path'] ?? '/');
      const answer = () => {
        if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 204 }, { endStream: true });
      };
      const jq = await jqFor(jqExpressions([filter]), rawHeaders);
      if (!matchesRequest(filter, { method, path, rawHeaders, body: pre?.body, jq })) {
        if (pre?.ended) return answer();
        stream.resume();
        return void stream.on('end', answer);
      }
      log?.debug(`mirror h2 ${method} ${path} -> session ${to.session}`);
      const up = session().request(headers, { endStream: false });
      up.on('error', answer);
      up.on('response', () => up.resume().on('end', answer));
      for (const chunk of pre?.chunks ?? []) up.write(chunk);
      if (pre?.ended) up.end();
      else stream.pipe(up);
    })();
  });
  server.on('sessionError', (err) => {
    log?.debug(`h2c mirror of ${what} for ${to.session} ends: ${err.message}`);
    socket.destroy();
  });
  socket.on('close', () => local?.destroy());
  server.emit('connection', socket);
}

/** Only the requests the filter matches (HTTP/1.x per request, h2c per stream), each re-sent to the local program. */
function filteredCopy(to: CopyTarget, filter: CompiledFilter, what: string, log?: Logger): FlowSink {
  const socket = parserSocket();
  let head: Buffer | undefined = Buffer.alloc(0);
  const preface = Buffer.from(H2_PREFACE, 'latin1');
  return {
    data(chunk) {
      if (head) {
        // Which protocol: decided once the first bytes can be told from the h2c preface.
        head = Buffer.concat([head, chunk]);
        const n = Math.min(head.length, preface.length);
        if (n < preface.length && head.subarray(0, n).equals(preface.subarray(0, n))) return;
        const first = head;
        head = undefined;
        if (first.subarray(0, preface.length).equals(preface)) serveH2Copy(socket, to, filter, what, log);
        else serveH1Copy(socket, to, filter, log);
        chunk = first;
      }
      socket.feed(chunk);
    },
    end: () => socket.feed(null),
    abort(reason) {
      log?.debug(`filtered mirror of ${what} for ${to.session} ends early: ${reason}`);
      socket.destroy();
    },
  };
}

/** One sink per mirroring session, fed by one reassembled connection. */
export function mirrorCopies(targets: CopyTarget[], what: string, log?: Logger): FlowSink {
  const sinks = targets.map((t) => (t.filter ? filteredCopy(t, t.filter, what, log) : rawCopy(t, what, log)));
  return {
    data: (chunk) => sinks.forEach((s) => s.data(chunk)),
    end: () => sinks.forEach((s) => s.end()),
    abort: (reason) => sinks.forEach((s) => s.abort(reason)),
  };
}
