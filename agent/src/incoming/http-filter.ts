/**
 * Stealing by HTTP request: the incoming connection is parsed as HTTP (Node's own parser, which
 * handles keep-alive, pipelining, chunked bodies and 100-continue), and each request goes either to
 * the local program (through a new agent stream) or to the real application, answered in order on
 * the client's one connection. HTTP/2 with prior knowledge (h2c) is routed per stream the same way.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import type { ApHttpFilter } from '../../../common/protocol/agent/index.js';
import type { Logger } from '../../../common/log.js';
import { compileJsonPath, stringify, type JsonPath } from './jsonpath.js';
import { evaluateJq, jqEngine } from './jq.js';
import { settings } from '../settings.js';

/**
 * A filter tree: leaves test the method, the path, the headers or the JSON body; `all` and `any`
 * combine them (mirrord's all_of / any_of, nested here to any depth).
 */
export type CompiledFilter =
  | { k: 'all' | 'any'; of: CompiledFilter[] }
  | { k: 'header' | 'path' | 'method'; re: RegExp }
  | { k: 'body'; query: JsonPath; re: RegExp }
  | { k: 'jq'; expr: string };

/** What a filter sees of a request; `body` is the whole body when some filter needs it (else undefined). */
export interface RequestView {
  method: string;
  path: string;
  rawHeaders: string[];
  body?: Buffer;
  /** What each jq expression gave for this request (evaluateJq, before routing); a missing one does not match. */
  jq?: ReadonlyMap<string, boolean>;
}

/** A body filter reads at most this much of a body (mirrord's default); a longer body does not match. */
export const BODY_FILTER_MAX = 65535;
/** ... and waits this long for it; a slower body does not match either. */
export const BODY_FILTER_WAIT_MS = 2000;

/** Compiles a filter; an invalid regex or JSONPath throws a one-line error naming it. */
export function compileFilter(f: ApHttpFilter): CompiledFilter {
  const re = (what: string, s: string) => {
    try {
      return new RegExp(s, 'i');
    } catch (err) {
      throw new Error(`http filter ${what} ${JSON.stringify(s)} is not a valid regex: ${(err as Error).message}`, { cause: err });
    }
  };
  const of: CompiledFilter[] = [];
  if (f.header !== undefined) of.push({ k: 'header', re: re('header', f.header) });
  if (f.path !== undefined) of.push({ k: 'path', re: re('path', f.path) });
  if (f.method !== undefined) of.push({ k: 'method', re: re('method', f.method) });
  if (f.body) of.push({ k: 'body', query: compileJsonPath(f.body.query), re: re('body matches', f.body.matches) });
  if (f.headerJq !== undefined) {
    of.push({ k: 'jq', expr: f.headerJq });
    jqEngine().warm();
  }
  if (f.allOf) of.push({ k: 'all', of: f.allOf.map(compileFilter) });
  if (f.anyOf) {
    if (f.anyOf.length === 0) throw new Error('http filter anyOf cannot be empty');
    of.push({ k: 'any', of: f.anyOf.map(compileFilter) });
  }
  return of.length === 1 ? of[0]! : { k: 'all', of };
}

export function needsBody(f: CompiledFilter): boolean {
  return f.k === 'body' || ((f.k === 'all' || f.k === 'any') && f.of.some(needsBody));
}

/** The jq expressions of some filters, each once (evaluated per request before routing: jq.ts). */
export function jqExpressions(filters: readonly CompiledFilter[]): string[] {
  const out = new Set<string>();
  const walk = (f: CompiledFilter) => {
    if (f.k === 'jq') out.add(f.expr);
    else if (f.k === 'all' || f.k === 'any') f.of.forEach(walk);
  };
  filters.forEach(walk);
  return [...out];
}

/** The jq results of a request for these expressions (none: undefined, nothing is started). */
export async function jqFor(exprs: readonly string[], rawHeaders: string[]): Promise<ReadonlyMap<string, boolean> | undefined> {
  return exprs.length ? evaluateJq(exprs, rawHeaders) : undefined;
}

function parseJson(body: Buffer | undefined): { ok: true; doc: unknown } | { ok: false } {
  if (!body) return { ok: false };
  try {
    return { ok: true, doc: JSON.parse(body.toString('utf8')) as unknown };
  } catch {
    return { ok: false };
  }
}

/** Header against "Name: value", path with and without its query, method; body by JSONPath then regex. */
export function matchesRequest(f: CompiledFilter, r: RequestView, json?: { ok: boolean; doc?: unknown }): boolean {
  switch (f.k) {
    case 'all':
      return f.of.every((x) => matchesRequest(x, r, json));
    case 'any':
      return f.of.some((x) => matchesRequest(x, r, json));
    case 'method':
      return f.re.test(r.method);
    case 'path':
      return f.re.test(r.path) || f.re.test(r.path.split('?')[0]!);
    case 'header':
      for (let i = 0; i + 1 < r.rawHeaders.length; i += 2) if (f.re.test(`${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}`)) return true;
      return false;
    case 'jq':
      return r.jq?.get(f.expr) ?? false;
    case 'body': {
      const parsed = json ?? parseJson(r.body);
      if (!parsed.ok) return false;
      return f.query.select(parsed.doc).some((v) => f.re.test(stringify(v)));
    }
  }
}

/** The pre-body form: every filter that is set must match (tests and header-only routing). */
export function matches(f: CompiledFilter, method: string, path: string, rawHeaders: string[], body?: Buffer): boolean {
  return matchesRequest(f, { method, path, rawHeaders, body });
}

/**
 * Reads up to BODY_FILTER_MAX bytes (agent.max_body_buffer_size) of a request body for a body filter,
 * waiting at most BODY_FILTER_WAIT_MS (agent.max_body_buffer_timeout). `chunks` are what was
 * read (to be sent on first, whoever gets the request); `body` is the whole body when it ended in
 * time and within the limit.
 */
export function readBodyForFilter(
  req: Readable,
  limits: { maxBytes?: number; waitMs?: number } = { maxBytes: settings().maxBodyBytes, waitMs: settings().maxBodyWaitMs },
): Promise<{ chunks: Buffer[]; ended: boolean; body?: Buffer }> {
  const max = limits.maxBytes ?? BODY_FILTER_MAX;
  const waitMs = limits.waitMs ?? BODY_FILTER_WAIT_MS;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (ended: boolean) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onEnd);
      req.pause();
      resolve({ chunks, ended, body: ended && size <= max ? Buffer.concat(chunks) : undefined });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size > max) done(false);
    };
    const onEnd = () => done(true);
    const timer = setTimeout(() => done(false), waitMs);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onEnd);
    if (req.readableEnded) done(true);
  });
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings']);

function endToEnd(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Where a request goes when it is not the target's application: one session's local program. */
export interface Route {
  /** The same key means the same destination (an h2c connection to it is reused). */
  key: string;
  /** A new byte stream to that local program (an agent stream). */
  open: () => Duplex;
}

export interface FilteredConnection {
  socket: net.Socket;
  /** The real application, as the client addressed it. */
  app: { host: string; port: number };
  /** Per request: the session it goes to, or undefined for the application. */
  route: (r: RequestView) => Route | undefined;
  /** Some filter looks at the body: each request's body is read (up to a limit) before it is routed. */
  needsBody?: boolean;
  /** The filters' jq expressions: each request's headers are run through them before it is routed. */
  jqExprs?: string[];
  log?: Logger;
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Looks at the first bytes, then serves the connection as HTTP/1.x or h2c. */
export function serveFiltered(c: FilteredConnection): void {
  const { socket } = c;
  socket.once('data', (first: Buffer) => {
    socket.pause();
    socket.unshift(first);
    const h2 =
      first.length >= 3 &&
      H2_PREFACE.subarray(0, Math.min(first.length, H2_PREFACE.length)).equals(first.subarray(0, Math.min(first.length, H2_PREFACE.length)));
    if (h2) serveH2({ ...c, socket: replaying(socket) as net.Socket });
    else serveH1(c);
  });
  socket.resume();
}

function serveH1(c: FilteredConnection): void {
  // One keep-alive connection to the real app per client connection, like a transparent proxy.
  const appAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const server = http.createServer({ keepAliveTimeout: 0 }, (req, res) => void handle(req, res));
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const pre = c.needsBody ? await readBodyForFilter(req) : undefined;
    const jq = await jqFor(c.jqExprs ?? [], req.rawHeaders);
    const toLocal = c.route({ method: req.method ?? 'GET', path: req.url ?? '/', rawHeaders: req.rawHeaders, body: pre?.body, jq });
    c.log?.debug(`${req.method} ${req.url} -> ${toLocal ? `session ${toLocal.key}` : 'remote app'}`);
    const upstream = http.request({
      method: req.method,
      path: req.url,
      headers: endToEnd(req.rawHeaders) as unknown as http.OutgoingHttpHeaders,
      setHost: false,
      ...(toLocal ? { createConnection: () => toLocal.open() as net.Socket } : { host: c.app.host, port: c.app.port, agent: appAgent }),
    });
    upstream.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.rawHeaders) as unknown as http.OutgoingHttpHeaders);
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      c.log?.debug(`upstream ${toLocal ? 'local' : 'app'} failed: ${err.message}`);
      if (!res.headersSent)
        res
          .writeHead(502, { 'content-type': 'text/plain' })
          .end(`mirrord: ${toLocal ? 'the local program' : 'the application'} did not answer: ${err.message}\n`);
      else res.destroy();
    });
    for (const chunk of pre?.chunks ?? []) upstream.write(chunk);
    if (pre?.ended) upstream.end();
    else req.pipe(upstream);
  };
  // WebSocket and other upgrades: routed by the same filter, then bytes flow untouched.
  server.on('upgrade', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => void upgrade(req, client, head));
  const upgrade = async (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    client.pause();
    const jq = await jqFor(c.jqExprs ?? [], req.rawHeaders);
    const toLocal = c.route({ method: req.method ?? 'GET', path: req.url ?? '/', rawHeaders: req.rawHeaders, jq });
    const upstream: Duplex = toLocal ? toLocal.open() : net.connect(c.app.port, c.app.host);
    const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(lines.join('\r\n') + '\r\n\r\n');
    if (head.length) upstream.write(head);
    client.pipe(upstream).pipe(client);
    const down = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', down);
    upstream.on('error', down);
  };
  server.on('clientError', (_err, s) => s.destroy());
  c.socket.on('close', () => appAgent.destroy());
  server.emit('connection', c.socket);
  c.socket.resume();
}

/**
 * The socket as a plain Duplex: the HTTP/2 server reads a real socket's native handle directly and
 * would never see the bytes we already peeked at; through a JS stream it reads what we unshifted.
 */
function replaying(socket: net.Socket): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}

function serveH2(c: FilteredConnection): void {
  const server = http2.createServer();
  let app: http2.ClientHttp2Session | undefined;
  // One h2c connection per session the requests go to.
  const locals = new Map<string, http2.ClientHttp2Session>();
  const session = (to: Route | undefined) => {
    if (to) {
      let local = locals.get(to.key);
      if (!local || local.destroyed) {
        local = http2.connect('http://local', { createConnection: () => to.open() as net.Socket });
        locals.set(to.key, local);
      }
      return local;
    }
    if (!app || app.destroyed) app = http2.connect(`http://${net.isIPv6(c.app.host) ? `[${c.app.host}]` : c.app.host}:${c.app.port}`);
    return app;
  };
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    void onStream(stream, headers, rawHeaders);
  });
  const onStream = async (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[]) => {
    const method = String(headers[':method'] ?? 'GET');
    const path = String(headers[':path'] ?? '/');
    const pre = c.needsBody ? await readBodyForFilter(stream) : undefined;
    const jq = await jqFor(c.jqExprs ?? [], rawHeaders);
    const toLocal = c.route({ method, path, rawHeaders, body: pre?.body, jq });
    c.log?.debug(`h2 ${method} ${path} -> ${toLocal ? `session ${toLocal.key}` : 'remote app'}`);
    const s = session(toLocal);
    s.on('error', () => undefined);
    const up = s.request(headers, { endStream: false });
    // The body may arrive in the same tick as the (deferred) 'response' event: pipe only after it,
    // or the first chunk would make the server answer 200 on its own.
    up.on('response', (h) => {
      stream.respond(h);
      up.pipe(stream);
    });
    up.on('error', () => (stream.headersSent ? stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR) : stream.respond({ ':status': 502 }, { endStream: true })));
    for (const chunk of pre?.chunks ?? []) up.write(chunk);
    if (pre?.ended) up.end();
    else stream.pipe(up);
    stream.on('error', () => up.close());
  };
  server.on('sessionError', () => c.socket.destroy());
  c.socket.on('close', () => {
    app?.destroy();
    for (const l of locals.values()) l.destroy();
  });
  server.emit('connection', c.socket);
  c.socket.resume();
}
