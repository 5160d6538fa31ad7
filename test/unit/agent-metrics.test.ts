import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { byteCounts, countConnection, metrics, metricsRegistry } from '../../agent/src/metrics.js';

describe('agent metrics', () => {
  it('the plain counters the data path adds to are what a scrape reads', async () => {
    const registry = await metricsRegistry();
    byteCounts.to_client += 1234;
    byteCounts.from_client += 56;
    metrics.sessions.inc();
    metrics.subscriptions.inc({ mode: 'steal' });
    metrics.dnsQueries.inc({ result: 'ENOTFOUND' });
    const closed: Array<() => void> = [];
    countConnection('outgoing', { once: (_ev, cb) => closed.push(cb) });
    let text = await registry.metrics();
    assert.match(text, /^mirrord_agent_bytes_total\{direction="to_client"\} 1234$/m);
    assert.match(text, /^mirrord_agent_bytes_total\{direction="from_client"\} 56$/m);
    assert.match(text, /^mirrord_agent_sessions 1$/m);
    assert.match(text, /^mirrord_agent_port_subscriptions\{mode="steal"\} 1$/m);
    assert.match(text, /^mirrord_agent_port_subscriptions\{mode="mirror"\} 0$/m, 'every series shows before anything happened');
    assert.match(text, /^mirrord_agent_dns_queries_total\{result="ENOTFOUND"\} 1$/m);
    assert.match(text, /^mirrord_agent_connections_total\{direction="outgoing"\} 1$/m);
    assert.match(text, /^mirrord_agent_open_connections\{direction="outgoing"\} 1$/m);
    assert.match(text, /^# TYPE mirrord_agent_bytes_total counter$/m);
    assert.match(text, /^# TYPE mirrord_agent_sessions gauge$/m);
    assert.match(text, /^mirrord_agent_process_resident_memory_bytes \d+/m, 'the default metrics are served');
    // A second scrape reads the numbers again, not what the first one added.
    for (const cb of closed) cb();
    metrics.sessions.dec();
    byteCounts.to_client += 1;
    text = await registry.metrics();
    assert.match(text, /^mirrord_agent_bytes_total\{direction="to_client"\} 1235$/m);
    assert.match(text, /^mirrord_agent_sessions 0$/m);
    assert.match(text, /^mirrord_agent_open_connections\{direction="outgoing"\} 0$/m);
    assert.match(text, /^mirrord_agent_connections_total\{direction="outgoing"\} 1$/m);
  });
});
