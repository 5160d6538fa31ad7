import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SidecarArgsError, parseSidecarArgs } from '../../src/config/sidecar-args.js';

/** container.cli_extra_args read into the sidecar's create options (the e2e in proxy-config.test.ts sees them on a real sidecar). */
describe('container.cli_extra_args', () => {
  it('reads the sidecar flags into labels, env and HostConfig', () => {
    const x = parseSidecarArgs(
      [
        '-l',
        'team=payments',
        '--label=solo',
        '-e',
        'A=1',
        '--env-file',
        'vars.env',
        '-p',
        '8080:80',
        '--network',
        'appnet',
        '-v',
        '/srv:/srv:ro',
        '--cap-add',
        'SYS_PTRACE',
        '--dns',
        '10.0.0.53',
        '--add-host',
        'db=10.1.2.3',
        '--ulimit',
        'nofile=1024:2048',
        '--ulimit',
        'nproc=64',
        '--security-opt',
        'no-new-privileges',
        '-m',
        '256m',
        '--memory-swap=-1',
        '--cpus',
        '1.5',
        '--shm-size',
        '1g',
        '--sysctl',
        'net.ipv4.ip_forward=1',
        '--tmpfs',
        '/run:size=1m',
        '--rm',
        '--init',
      ],
      (f) => (f === 'vars.env' ? 'B=two\n# comment\nC="three"\n' : assert.fail(f)),
    );
    assert.deepEqual(x.labels, { team: 'payments', solo: '' });
    assert.deepEqual(x.env, ['B=two', 'C=three', 'A=1']);
    assert.deepEqual(x.publish, ['8080:80']);
    assert.equal(x.network, 'appnet');
    assert.deepEqual(x.host, {
      Binds: ['/srv:/srv:ro'],
      CapAdd: ['SYS_PTRACE'],
      Dns: ['10.0.0.53'],
      ExtraHosts: ['db:10.1.2.3'],
      SecurityOpt: ['no-new-privileges'],
      Ulimits: [
        { Name: 'nofile', Soft: 1024, Hard: 2048 },
        { Name: 'nproc', Soft: 64, Hard: 64 },
      ],
      Memory: 256 * 1024 * 1024,
      MemorySwap: -1,
      NanoCpus: 1_500_000_000,
      ShmSize: 1024 ** 3,
      Sysctls: { 'net.ipv4.ip_forward': '1' },
      Tmpfs: { '/run': 'size=1m' },
      Init: true,
    });
  });

  it('refuses any other flag with one line naming it', () => {
    const refused = (args: string[]) =>
      assert.throws(
        () => parseSidecarArgs(args),
        (e: Error) => e instanceof SidecarArgsError && !e.message.includes('\n') && e.message.includes(args[0]!),
      );
    for (const [args, re] of [
      [['--name', 'x'], /docker run --name is not taken for the sidecar: the sidecar is named after the session/],
      [['-d'], /docker run -d is not taken .*attached/],
      [['--log-driver=json-file'], /docker run --log-driver is not taken .*stdout is the link/],
      [['--frobnicate'], /docker run --frobnicate is not taken for the sidecar: the sidecar takes -l\/--label/],
      [['alpine'], /"alpine" is not a flag/],
      [['--memory', 'lots'], /docker run --memory lots: expected a size/],
      [['--ulimit', 'nofile'], /docker run --ulimit nofile: expected NAME=SOFT\[:HARD\]/],
      [['--network', 'host'], /docker run --network host is not taken/],
      [['--label'], /needs a value|argument missing/],
    ] as Array<[string[], RegExp]>) {
      assert.throws(() => parseSidecarArgs(args), re, args.join(' '));
    }
    refused(['-t']);
  });
});
