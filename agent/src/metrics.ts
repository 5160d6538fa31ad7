/**
 * agent.metrics: a Prometheus endpoint (GET /metrics) in the agent, served with prom-client on the
 * address the config names, in the agent's network namespace (the target's).
 *
 * The counters are plain numbers, kept whether or not the endpoint is served: the data path adds to
 * them (an addition per DATA frame, no label hashing), and prom-client, imported only when
 * agent.metrics is set, reads them at scrape time (each metric's collect()). An agent without
 * agent.metrics never loads prom-client nor its default metrics.
 */
import http from 'node:http';
import type { Logger } from '../../common/log.js';

/** One number per value of the metric's one label (or a single number, label ''). */
export class Series {
  readonly values = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    readonly label?: string,
    initial: string[] = [],
  ) {
    if (!label) this.values.set('', 0);
    for (const v of initial) this.values.set(v, 0);
  }

  private key(labels?: Record<string, string>): string {
    return this.label && labels ? (labels[this.label] ?? '') : '';
  }

  inc(labels?: Record<string, string>, by = 1): void {
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  dec(labels?: Record<string, string>, by = 1): void {
    this.inc(labels, -by);
  }

  set(labels: Record<string, string> | undefined, value: number): void {
    this.values.set(this.key(labels), value);
  }

  get(labels?: Record<string, string>): number {
    return this.values.get(this.key(labels)) ?? 0;
  }
}

/**
 * Payload bytes on the agent links, the one count on the data path: two fields a DATA frame adds
 * its length to (server.ts), read as mirrord_agent_bytes_total at scrape time.
 */
export const byteCounts = { to_client: 0, from_client: 0 };

export const metrics = {
  sessions: new Series('mirrord_agent_sessions', 'Sessions connected to the agent', 'gauge'),
  connections: new Series(
    'mirrord_agent_connections_total',
    'Connections the agent carried: outgoing (made for the program) and incoming (stolen or mirrored to it)',
    'counter',
    'direction',
    ['incoming', 'outgoing'],
  ),
  openConnections: new Series('mirrord_agent_open_connections', 'Connections the agent carries now', 'gauge', 'direction', ['incoming', 'outgoing']),
  subscriptions: new Series('mirrord_agent_port_subscriptions', 'Incoming port subscriptions, by mode (steal or mirror)', 'gauge', 'mode', ['steal', 'mirror']),
  dnsQueries: new Series(
    'mirrord_agent_dns_queries_total',
    'DNS lookups the agent made for its clients, by outcome (ok or the error code)',
    'counter',
    'result',
  ),
};

const BYTES = { name: 'mirrord_agent_bytes_total', help: 'Payload bytes on the agent links: to_client or from_client' };

/** Counts one connection while `socket` is open. */
export function countConnection(direction: 'incoming' | 'outgoing', socket: { once(ev: 'close', cb: () => void): unknown }): void {
  const labels = { direction };
  metrics.connections.inc(labels);
  metrics.openConnections.inc(labels);
  socket.once('close', () => metrics.openConnections.dec(labels));
}

/** A prom-client registry whose metrics read the counters above at each scrape. */
export async function metricsRegistry(): Promise<import('prom-client').Registry> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  type Sample = readonly [Record<string, string>, number];
  const exported = [
    ...Object.values(metrics).map((s) => ({
      name: s.name,
      help: s.help,
      type: s.type,
      labelNames: s.label ? [s.label] : [],
      read: (): Sample[] => [...s.values].map(([v, n]) => [s.label ? { [s.label]: v } : {}, n]),
    })),
    { ...BYTES, type: 'counter' as const, labelNames: ['direction'], read: (): Sample[] => Object.entries(byteCounts).map(([d, n]) => [{ direction: d }, n]) },
  ];
  for (const m of exported) {
    const config = { name: m.name, help: m.help, labelNames: m.labelNames, registers: [registry] };
    if (m.type === 'gauge')
      new prom.Gauge({
        ...config,
        collect() {
          this.reset();
          for (const [l, n] of m.read()) this.set(l, n);
        },
      });
    else
      new prom.Counter({
        ...config,
        collect() {
          this.reset();
          for (const [l, n] of m.read()) this.inc(l, n);
        },
      });
  }
  prom.collectDefaultMetrics({ register: registry, prefix: 'mirrord_agent_' });
  return registry;
}

/** Serves /metrics until the process ends; a port already taken is logged, not fatal. */
export async function serveMetrics(address: { host: string; port: number }, log: Logger): Promise<http.Server | undefined> {
  const registry = await metricsRegistry();
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
