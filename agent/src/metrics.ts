/**
 * agent.metrics: a Prometheus endpoint (GET /metrics) in the agent, served with prom-client on the
 * address the config names, in the agent's network namespace (the target's). The counters exist
 * whether or not the endpoint is served; they cost an addition each.
 */
import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../../common/log.js';

export const registry = new Registry();

export const metrics = {
  sessions: new Gauge({ name: 'mirrord_agent_sessions', help: 'Sessions connected to the agent', registers: [registry] }),
  connections: new Counter({
    name: 'mirrord_agent_connections_total',
    help: 'Connections the agent carried: outgoing (made for the program) and incoming (stolen or mirrored to it)',
    labelNames: ['direction'] as const,
    registers: [registry],
  }),
  openConnections: new Gauge({
    name: 'mirrord_agent_open_connections',
    help: 'Connections the agent carries now',
    labelNames: ['direction'] as const,
    registers: [registry],
  }),
  bytes: new Counter({
    name: 'mirrord_agent_bytes_total',
    help: 'Payload bytes on the agent links: to_client or from_client',
    labelNames: ['direction'] as const,
    registers: [registry],
  }),
  subscriptions: new Gauge({
    name: 'mirrord_agent_port_subscriptions',
    help: 'Incoming port subscriptions, by mode (steal or mirror)',
    labelNames: ['mode'] as const,
    registers: [registry],
  }),
  dnsQueries: new Counter({
    name: 'mirrord_agent_dns_queries_total',
    help: 'DNS lookups the agent made for its clients, by outcome (ok or the error code)',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
};

// Zero series from the start, so a scrape shows every metric before anything happened.
for (const d of ['incoming', 'outgoing']) {
  metrics.connections.inc({ direction: d }, 0);
  metrics.openConnections.set({ direction: d }, 0);
}
for (const d of ['to_client', 'from_client']) metrics.bytes.inc({ direction: d }, 0);
for (const m of ['steal', 'mirror']) metrics.subscriptions.set({ mode: m }, 0);

/** Counts one connection while `socket` is open. */
export function countConnection(direction: 'incoming' | 'outgoing', socket: { once(ev: 'close', cb: () => void): unknown }): void {
  metrics.connections.inc({ direction });
  metrics.openConnections.inc({ direction });
  socket.once('close', () => metrics.openConnections.dec({ direction }));
}

/** Serves /metrics until the process ends; a port already taken is logged, not fatal. */
export function serveMetrics(address: { host: string; port: number }, log: Logger): Promise<http.Server | undefined> {
  collectDefaultMetrics({ register: registry, prefix: 'mirrord_agent_' });
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('the metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve) => {
    server.once('error', (err) => {
      log.warn(`agent.metrics: cannot listen on ${address.host}:${address.port}: ${err.message}`);
      resolve(undefined);
    });
    server.listen(address.port, address.host, () => {
      log.info(`metrics on http://${address.host}:${address.port}/metrics`);
      server.unref();
      resolve(server);
    });
  });
}
