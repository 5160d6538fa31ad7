import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extractCommand, ownMountPoints } from '../../src/devcontainer/mounts.js';
import { withLocalCopies } from '../../src/fs/mounts.js';
import type { FsSettings } from '../../src/fs/rules.js';

describe("a dev container's copy of the target's mounted files", () => {
  it("leaves the dev container's own mount points alone (the root aside), escapes decoded", () => {
    const mountinfo = [
      '736 651 0:57 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/x',
      '737 736 0:60 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
      '745 736 254:1 /home/me/ws /workspaces/my\\040app rw,relatime - ext4 /dev/vda1 rw',
      '746 736 0:24 /docker.sock /run/docker.sock rw,nosuid,nodev - tmpfs tmpfs rw',
      '747 736 254:1 /var/lib/docker/containers/x/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw',
      '',
    ].join('\n');
    assert.deepEqual(ownMountPoints(mountinfo), ['/etc/hosts', '/proc', '/run/docker.sock', '/workspaces/my app']);
  });

  it('extracts as root directly, and through sudo -n otherwise, keeping numeric owners', () => {
    assert.deepEqual(extractCommand(0), ['tar', ['-x', '-p', '--numeric-owner', '-f', '-', '-C', '/']]);
    assert.deepEqual(extractCommand(1000), ['sudo', ['-n', 'tar', '-x', '-p', '--numeric-owner', '-f', '-', '-C', '/']]);
  });

  it('read mode reads the copies locally, except what read_write/read_only rules name; write mode keeps the target', () => {
    const roots = ['/srv/data', '/var/run/secrets/kubernetes.io/serviceaccount'];
    assert.deepEqual(withLocalCopies<FsSettings>({ mode: 'read', local: ['^/opt'] }, roots).local, [
      '^/opt',
      '^/srv/data(/|$)',
      '^/var/run/secrets/kubernetes\\.io/serviceaccount(/|$)',
    ]);
    assert.deepEqual(withLocalCopies<FsSettings>({ mode: 'read', read_only: ['^/srv/data/'] }, roots).local, [
      '^/var/run/secrets/kubernetes\\.io/serviceaccount(/|$)',
    ]);
    const write = { mode: 'write' as const };
    assert.equal(withLocalCopies(write, roots), write);
  });
});
