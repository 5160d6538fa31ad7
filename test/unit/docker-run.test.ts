import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOptions, parseDockerRun } from '../../src/local/container/docker-run.js';
import type { MirrordError } from '../../common/errors.js';

describe('docker run arguments for container mode', () => {
  it('reads the supported flags in every spelling, then the image and its command', () => {
    const r = parseDockerRun([
      'docker',
      'run',
      '-it',
      '--rm',
      '-e',
      'A=1',
      '--env=B=2',
      '-eC=3',
      '--env-file',
      'x.env',
      '-v',
      '/a:/b:ro',
      '--volume=/c:/d',
      '-w',
      '/srv',
      '--entrypoint',
      'sh',
      '--name',
      'dev',
      '-u',
      '1000:1000',
      '-p',
      '8080:80',
      '--network',
      'mynet',
      'debian:bookworm',
      '-c',
      'echo -e hi',
    ]);
    assert.deepEqual(
      { ...r },
      {
        engine: 'docker',
        image: 'debian:bookworm',
        cmd: ['-c', 'echo -e hi'],
        name: 'dev',
        interactive: true,
        tty: true,
        autoRemove: true,
        env: ['A=1', 'B=2', 'C=3'],
        envFiles: ['x.env'],
        binds: ['/a:/b:ro', '/c:/d'],
        workdir: '/srv',
        entrypoint: ['sh'],
        user: '1000:1000',
        network: 'mynet',
        publish: ['8080:80'],
      },
    );
    assert.equal(parseDockerRun(['podman', 'run', 'img']).engine, 'podman');
  });

  it("refuses what cannot share the sidecar's namespace, and unknown flags, with the reason", () => {
    const refused = (argv: string[], re: RegExp) =>
      assert.throws(
        () => parseDockerRun(argv),
        (e: MirrordError) => re.test(`${e.message} ${e.hint ?? ''}`) && e.code === 64,
        argv.join(' '),
      );
    refused(['docker', 'run', '--network', 'host', 'img'], /--network host cannot be combined/);
    refused(['docker', 'run', '--net=container:x', 'img'], /container:x cannot be combined/);
    refused(['docker', 'run', '-d', 'img'], /attached/);
    refused(['docker', 'run', '--hostname', 'h', 'img'], /host name/);
    refused(['docker', 'run', '--privileged', 'img'], /--privileged is not supported by mirrord container yet/);
    refused(['docker', 'run', '-itx', 'img'], /-x is not supported/);
    refused(['docker', 'run', '--rm'], /needs an image/);
    refused(['docker', 'build', '.'], /expected "docker run/);
    refused(['docker', 'run', '-e'], /-e needs a value/);
  });

  it('joins the user container to the sidecar, session environment last', () => {
    const o = createOptions(parseDockerRun(['docker', 'run', '-i', '-e', 'X=mine', 'img', 'cmd']), 'sidecar123', {
      LD_PRELOAD: '/mirrord/libmirrord_layer.so',
      X: 'session',
    });
    assert.equal(o.HostConfig?.NetworkMode, 'container:sidecar123');
    assert.deepEqual(o.HostConfig?.VolumesFrom, ['sidecar123']);
    assert.deepEqual(o.Env, ['X=mine', 'LD_PRELOAD=/mirrord/libmirrord_layer.so', 'X=session']);
    assert.equal(o.OpenStdin, true);
    assert.deepEqual(o.Cmd, ['cmd']);
  });
});
