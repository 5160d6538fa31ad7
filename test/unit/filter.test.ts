import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TrafficFilter, isLoopback, parseFilterEntry } from '../../src/intproxy/filter.js';

describe('traffic filters', () => {
  it('parses every entry form', () => {
    assert.equal(parseFilterEntry('tcp://db.internal:5432', 'f').proto, 'tcp');
    assert.equal(parseFilterEntry('tcp://db.internal:5432', 'f').port, 5432);
    assert.equal(parseFilterEntry(':53', 'f').port, 53);
    assert.equal(parseFilterEntry('[::1]:80', 'f').port, 80);
    assert.throws(() => parseFilterEntry('10.0.0.0/99', 'feature.x'), /feature\.x: invalid entry/);
    assert.throws(() => parseFilterEntry('a:99999', 'f'), /port/);
  });
  it('local list: matches stay local, the rest goes remote', () => {
    const f = TrafficFilter.compile({ local: ['10.0.0.0/8', 'tcp://cache:6379', ':9999'] }, 'f');
    assert.equal(f.route({ proto: 'tcp', ip: '10.1.2.3', port: 80, names: [] }), 'local');
    assert.equal(f.route({ proto: 'tcp', ip: '172.18.0.5', port: 6379, names: ['cache'] }), 'local');
    assert.equal(f.route({ proto: 'tcp', ip: '172.18.0.5', port: 6380, names: ['cache'] }), 'remote');
    assert.equal(f.route({ proto: 'tcp', ip: '172.18.0.6', port: 9999, names: [] }), 'local');
    assert.equal(f.route({ proto: 'tcp', ip: '172.18.0.6', port: 80, names: [] }), 'remote');
  });
  it('remote list: only matches go remote; suffix names with a leading dot', () => {
    const f = TrafficFilter.compile({ remote: ['.svc.cluster.local', '192.168.0.0/16:443'] }, 'f');
    assert.equal(f.route({ proto: 'tcp', ip: '1.2.3.4', port: 80, names: ['api.ns.svc.cluster.local'] }), 'remote');
    assert.equal(f.route({ proto: 'tcp', ip: '192.168.3.4', port: 443, names: [] }), 'remote');
    assert.equal(f.route({ proto: 'tcp', ip: '192.168.3.4', port: 80, names: [] }), 'local');
    assert.equal(f.route({ proto: 'udp', names: ['example.org'] }), 'local');
  });
  it('no filter: everything remote', () => {
    assert.equal(TrafficFilter.compile(undefined, 'f').route({ proto: 'tcp', ip: '8.8.8.8', port: 53, names: [] }), 'remote');
  });
  it('loopback detection', () => {
    assert.deepEqual(['127.0.0.1', '127.5.5.5', '::1', '::ffff:127.0.0.1', '10.0.0.1'].map(isLoopback), [true, true, true, true, false]);
  });
});
