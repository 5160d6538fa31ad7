import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FS_ZERO_STAT } from '../../common/protocol/layer/index.js';
import { createLogger } from '../../common/log.js';
import { validateConfig } from '../../src/config/load.js';
import { noticesFor } from '../../src/config/notices.js';
import { resolveFeatures } from '../../src/config/schema.js';
import { mergeEnv } from '../../src/env/merge.js';
import { FsRules, jsReplacement } from '../../src/fs/rules.js';
import { FileProxy } from '../../src/intproxy/files.js';
import { fakeAgentPort } from '../helpers/fake-agent-port.js';

/** mirrord's feature keys of issue 17 item 3 as they reach the code that applies them. */

const features = (raw: Record<string, unknown>) => resolveFeatures(validateConfig({ target: 'docker/x', ...raw }));

describe('feature.env.mapping, unset, load_from_process', () => {
  const remote = { CONNECT_TIMEOUT: '500', READ_TIMEOUT: '20', LOG_DB_VERBOSITY: 'info', DB_URL: 'pg://remote', AWS_PROFILE: 'prod' };
  it('mapping rewrites remote and env_file values by name (first matching regex), override still wins, unset removes in any case', () => {
    const env = features({
      feature: {
        env: {
          mapping: { '.+_TIMEOUT': '10000', '^LOG_(?P<what>\\w+)_VERBOSITY$': 'debug', FROM_FILE: 'mapped' },
          override: { READ_TIMEOUT: '1' },
          unset: 'aws_profile;Local_Only',
          env_file: '/f',
          load_from_process: true,
        },
      },
    }).env;
    const { env: out, fromRemote } = mergeEnv({ LOCAL_ONLY: 'x', CONNECT_TIMEOUT_LOCAL: 'kept', KEEP: 'k' }, remote, env, () => 'FROM_FILE=file\n');
    assert.equal(out.CONNECT_TIMEOUT, '10000');
    assert.equal(out.READ_TIMEOUT, '1');
    assert.equal(out.LOG_DB_VERBOSITY, 'debug');
    assert.equal(out.DB_URL, 'pg://remote');
    assert.equal(out.FROM_FILE, 'mapped');
    // A local variable is not the target's: mapping leaves it alone.
    assert.equal(out.CONNECT_TIMEOUT_LOCAL, 'kept');
    assert.equal(out.AWS_PROFILE, undefined);
    assert.equal(out.LOCAL_ONLY, undefined);
    assert.equal(out.KEEP, 'k');
    assert.ok(!fromRemote.includes('AWS_PROFILE'));
  });
  it('a mapping regex that does not compile is a config error naming it', () => {
    assert.throws(() => validateConfig({ feature: { env: { mapping: { '(': 'x' } } } }), /feature\.env\.mapping\.\(: invalid regex/);
  });
});

describe('feature.fs.mapping', () => {
  const rules = new FsRules(
    features({
      feature: {
        fs: {
          mapping: {
            '^/home/(?<user>[^/]+)/dev/config/(?<app>[^/]+)': '/mnt/configs/${user}-$app',
            '^/Users/[^/]+/app': '/srv/app',
            '/(baz)': '/tmp/mirrord-$1',
          },
        },
      },
    }).fs,
    { cwd: '/home/dev/project', home: '/home/dev' },
  );
  it('replaces the first match, with Rust-style $name, ${name} and $1, case-insensitively', () => {
    assert.equal(rules.mapPath('/home/jo/dev/config/api/app.conf'), '/mnt/configs/jo-api/app.conf');
    assert.equal(rules.mapPath('/users/jo/APP/static/x.css'), '/srv/app/static/x.css');
    assert.equal(rules.mapPath('/data/baz/file'), '/data/tmp/mirrord-baz/file');
    assert.equal(rules.mapPath('/data/other'), '/data/other');
    assert.equal(rules.mapPath('relative/baz'), 'relative/baz');
    assert.equal(jsReplacement('$$1 ${1}x $name'), '$$1 $1x $<name>');
  });
  it('the rules decide on the replaced path, and the layer asks about every mapped prefix', () => {
    assert.equal(rules.decide(rules.mapPath('/home/dev/dev/config/api/app.conf'), 'read').kind, 'remote-ro');
    assert.equal(rules.decide('/home/dev/dev/config/api/app.conf', 'read').kind, 'local');
    // /(baz) is unanchored: the layer must ask about every path.
    assert.deepEqual(rules.layerHints(), { off: false, local: [], ask: [] });
    const anchored = new FsRules(features({ feature: { fs: { mapping: { '^/home/dev/cfg': '/etc/app' } } } }).fs, { cwd: '/home/dev' });
    assert.ok(anchored.layerHints().ask.includes('/home/dev/cfg'));
  });
});

describe('feature.fs.readonly_file_buffer', () => {
  const FILE = Buffer.alloc(300_000, 7);
  async function readAll(buffer: number | undefined): Promise<number[]> {
    const lens: number[] = [];
    const agent = fakeAgentPort({
      request: (method, params) => {
        const p = params as { offset: number; len: number };
        if (method === 'fs.mounts') return Promise.resolve({ mounts: [] });
        if (method === 'fs.open') return Promise.resolve({ fd: 3, stat: FS_ZERO_STAT });
        if (method === 'fs.close') return Promise.resolve({});
        if (method === 'fs.read') {
          lens.push(p.len);
          return Promise.resolve({ data: FILE.subarray(p.offset, p.offset + p.len) });
        }
        return Promise.reject(new Error(`unexpected ${method}`));
      },
    });
    const fs = features({ feature: { fs: buffer === undefined ? {} : { readonly_file_buffer: buffer } } }).fs;
    const proxy = new FileProxy(agent, fs, createLogger('test', 'error'));
    proxy.onHello(1, 100, 0);
    const open = await proxy.handle(1, { id: 1, kind: 'open', path: '/data/file', flags: 0, mode: 0 });
    assert.equal(open.status, 0);
    const handle = (open as { handle: number }).handle;
    let offset = 0;
    for (;;) {
      const r = (await proxy.handle(1, { id: 2, kind: 'read', handle, offset, len: 4096 })) as { data: Buffer };
      if (r.data.length === 0) break;
      offset += r.data.length;
    }
    assert.equal(offset, FILE.length);
    await proxy.closeAll();
    return lens;
  }
  it('0 asks the agent for exactly what each read wants; a size asks that many bytes', async () => {
    const none = await readAll(0);
    assert.ok(
      none.every((l) => l === 4096),
      String(none),
    );
    assert.ok(none.length >= FILE.length / 4096);
    const small = await readAll(128_000);
    assert.ok(
      small.every((l) => l === 128_000),
      String(small),
    );
    assert.ok(small.length <= 4, String(small));
  });
  it("more than mirrord's 15 MiB is refused; above the agent's 512 KiB per read it reads 512 KiB", async () => {
    assert.throws(() => validateConfig({ feature: { fs: { readonly_file_buffer: 16 * 1024 * 1024 } } }), /feature\.fs\.readonly_file_buffer/);
    const big = await readAll(8 * 1024 * 1024);
    assert.ok(
      big.every((l) => l === 512 * 1024),
      String(big),
    );
  });
});

describe('keys without effect here', () => {
  it('verify-config names each key the file sets that has no effect, with why', () => {
    const notices = noticesFor({
      telemetry: false,
      agent: { json_log: true, dns: { timeout: 3 }, ttl: 5, image: 'ghcr.io/metalbear-co/mirrord:3.120.0' },
      feature: { network: { ipv6: true } },
      external_proxy: { idle_timeout: 30 },
      container: { override_host_ip: '172.17.0.1' },
    });
    const keys = notices.map((n) => n.split(':')[0]);
    // agent.json_log and agent.dns are honoured: no notice, though the file sets them.
    assert.deepEqual(keys.sort(), ['agent.image', 'container.override_host_ip', 'external_proxy.idle_timeout', 'feature.network.ipv6', 'telemetry']);
    assert.ok(notices.every((n) => /no effect here: .+|does not speak/.test(n)));
  });
  it('a file of honoured keys gets no notice', () => {
    assert.deepEqual(noticesFor({ target: 'docker/x', agent: { ttl: 3, labels: { a: 'b' } }, feature: { fs: 'read', env: { unset: 'X' } } }), []);
  });
});
