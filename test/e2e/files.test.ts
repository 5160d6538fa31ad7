/**
 * Remote files end to end: the real CLI against a real target container whose files exist only
 * there (/srv), with a Docker volume mounted at /etc/app and a bind mount at /data, and symlinks
 * that try to leave the target's root. Real programs: cat, sh, python3, node.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type Docker from 'dockerode';
import { runCli } from '../helpers/cli.js';
import { RUN_ID, TEST_LABEL, docker, toolsImage } from '../helpers/docker-fixtures.js';

const tag = randomBytes(3).toString('hex');
const HOST_MARKER = `/tmp/mirrord-e2e-host-marker-${tag}`;
const MARKER_TEXT = `HOST-MARKER-${tag}`;
let target: Docker.Container;
let targetName = '';
let volume = '';
let bindDir = '';
let cfgDir = '';

const SETUP = [
  'mkdir -p /srv/dir/sub',
  'printf "only in the target\\nsecond\\n" > /srv/hello.txt',
  'echo a > /srv/dir/a.txt && echo b > /srv/dir/b.txt',
  'ln -s / /srv/to-root',
  'ln -s ../../../../etc/shadow /srv/up-shadow',
  `ln -s ${HOST_MARKER} /srv/abs-marker`,
  `ln -s ../../../../../..${HOST_MARKER} /srv/up-marker`,
  'echo volume-config > /etc/app/config.ini',
  'echo secret > /srv/secret.txt && echo locally-ruled > /srv/rule.local',
  'touch /ready',
  'exec sleep infinity',
].join(' && ');

async function inTarget(cmd: string): Promise<string> {
  const exec = await target.exec({ Cmd: ['sh', '-c', cmd], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  const { PassThrough } = await import('node:stream');
  const out = new PassThrough();
  out.on('data', (b: Buffer) => chunks.push(b));
  docker().modem.demuxStream(stream, out, new PassThrough());
  await new Promise((r) => stream.on('end', r));
  return Buffer.concat(chunks).toString();
}

function exec(args: string[], cmd: string[], env?: NodeJS.ProcessEnv) {
  return runCli(['exec', '-t', `docker/${targetName}`, ...args, '--', ...cmd], { env, timeoutMs: 90_000 });
}

function config(fs: unknown): string {
  const file = path.join(cfgDir, `${randomBytes(3).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify({ feature: { fs } }));
  return file;
}

describe('remote files (mirrord exec)', { timeout: 600_000 }, () => {
  before(async () => {
    writeFileSync(HOST_MARKER, `${MARKER_TEXT}\n`);
    cfgDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-fs-'));
    bindDir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-e2e-bind-'));
    writeFileSync(path.join(bindDir, 'bound.txt'), 'from-a-bind-mount\n');
    volume = `mirrord-e2e-vol-${tag}`;
    await docker().createVolume({ Name: volume, Labels: { [TEST_LABEL]: RUN_ID } });
    targetName = `e2e-files-${tag}`;
    target = await docker().createContainer({
      name: targetName,
      Image: await toolsImage(),
      Cmd: ['sh', '-c', SETUP],
      Labels: { [TEST_LABEL]: RUN_ID },
      HostConfig: {
        Mounts: [
          { Type: 'volume', Source: volume, Target: '/etc/app' },
          { Type: 'bind', Source: bindDir, Target: '/data', ReadOnly: true },
        ],
      },
    });
    await target.start();
    for (let i = 0; i < 100 && !(await inTarget('test -f /ready && echo yes')).includes('yes'); i++) await new Promise((r) => setTimeout(r, 200));
  });

  after(async () => {
    await target?.remove({ force: true, v: true }).catch(() => undefined);
    await docker()
      .getVolume(volume)
      .remove()
      .catch(() => undefined);
    rmSync(HOST_MARKER, { force: true });
    rmSync(cfgDir, { recursive: true, force: true });
    rmSync(bindDir, { recursive: true, force: true });
  });

  it('cat reads a file that exists only in the target', async () => {
    assert.ok(!existsSync('/srv/hello.txt'));
    const r = await exec([], ['cat', '/srv/hello.txt']);
    assert.equal(r.stdout, 'only in the target\nsecond\n', r.stderr);
    assert.equal(r.code, 0);
  });

  it('python3: open().read(), os.listdir, os.stat', async () => {
    const r = await exec(
      [],
      [
        'python3',
        '-c',
        "import os; print(open('/srv/hello.txt').read().split()[0]); print(sorted(os.listdir('/srv/dir'))); print(os.stat('/srv/hello.txt').st_size)",
      ],
    );
    assert.deepEqual(r.stdout.trim().split('\n'), ['only', "['a.txt', 'b.txt', 'sub']", '26'], r.stderr);
  });

  it('node: fs.readFileSync, fs.readdirSync, fs.promises', async () => {
    const script =
      "const fs=require('fs');console.log(fs.readFileSync('/srv/hello.txt','utf8').split('\\n')[0]);console.log(fs.readdirSync('/srv/dir').sort().join(','));" +
      "fs.promises.readFile('/srv/dir/b.txt','utf8').then(async (t)=>{console.log(t.trim());console.log((await fs.promises.readdir('/srv/dir')).sort().join(','))})";
    const r = await exec([], ['node', '-e', script]);
    assert.deepEqual(r.stdout.trim().split('\n'), ['only in the target', 'a.txt,b.txt,sub', 'b', 'a.txt,b.txt,sub'], r.stderr);
  });

  it('a volume under /etc and a bind mount under /data come from the target; the rest of /etc stays local', async () => {
    const r = await exec([], ['sh', '-c', 'cat /etc/app/config.ini /data/bound.txt; head -c 5 /etc/passwd; echo; cat /etc/hostname']);
    const [cfg, bound, passwd, hostname] = r.stdout.trim().split('\n');
    assert.equal(cfg, 'volume-config', r.stderr);
    assert.equal(bound, 'from-a-bind-mount');
    assert.equal(passwd, 'root:');
    assert.equal(hostname, (await inTarget('cat /etc/hostname')).trim(), "the target's /etc/hostname");
  });

  it('write mode creates the file in the target; read mode creates it locally and not in the target', async () => {
    const w = await exec(['--fs-mode', 'write'], ['sh', '-c', 'echo x > /srv/out.txt']);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(await inTarget('cat /srv/out.txt'), 'x\n');
    const local = `/srv/mirrord-e2e-${tag}.txt`;
    try {
      const r = await exec([], ['sh', '-c', `echo y > ${local}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(local), 'read mode writes locally');
      assert.equal(await inTarget(`test -e ${local} && echo present || echo absent`), 'absent\n');
    } finally {
      rmSync(local, { force: true });
    }
  });

  it("remote files handed to exec'd programs: `wc -l < /srv/...`, and in write mode `tr > /srv/...`", async () => {
    const r = await exec(['--fs-mode', 'write'], ['sh', '-c', 'wc -l < /srv/hello.txt; tr a-z A-Z < /srv/hello.txt > /srv/upper.txt']);
    assert.equal(r.stdout.trim(), '2', r.stderr);
    let upper = '';
    for (let i = 0; i < 30 && upper !== 'ONLY IN THE TARGET\nSECOND\n'; i++) {
      upper = await inTarget('cat /srv/upper.txt 2>/dev/null');
      if (upper !== 'ONLY IN THE TARGET\nSECOND\n') await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(upper, 'ONLY IN THE TARGET\nSECOND\n');
  });

  it('not_found and local rules behave as documented', async () => {
    const f = config({ not_found: ['^/srv/secret'], local: ['\\.local$'] });
    const r = await exec(
      ['-f', f],
      ['sh', '-c', 'cat /srv/secret.txt 2>&1 || echo secret-missing; cat /srv/rule.local 2>&1 || echo rule-local-missing; cat /srv/hello.txt | head -1'],
    );
    assert.deepEqual(
      r.stdout
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('cat:')),
      ['secret-missing', 'rule-local-missing', 'only in the target'],
      r.stdout + r.stderr,
    );
  });

  it('symlinks to /, ../../.. and absolute host paths never expose a host or agent file', async () => {
    const probes = [
      `/srv/to-root${HOST_MARKER}`,
      '/srv/abs-marker',
      '/srv/up-marker',
      `/srv/../../..${HOST_MARKER.replace('/tmp/', '/srv/to-root/tmp/')}`,
      '/srv/to-root/opt/mirrord/agent.mjs', // exists in the agent's own container only
    ];
    const r = await exec([], ['sh', '-c', probes.map((p) => `head -c 64 ${p} 2>/dev/null || echo missing`).join('; ')]);
    assert.ok(!r.stdout.includes(MARKER_TEXT), `a host file leaked: ${r.stdout}`);
    assert.deepEqual(
      r.stdout.trim().split('\n'),
      probes.map(() => 'missing'),
      r.stdout + r.stderr,
    );
    const shadow = await exec([], ['cat', '/srv/up-shadow']);
    assert.equal(shadow.stdout, await inTarget('cat /etc/shadow'), "../../../../etc/shadow is the target's own");
  });

  it("the program's own runtime loads locally: python imports cost no remote round trip", async () => {
    const script =
      'import time;t=time.perf_counter();import json,decimal,asyncio,email.mime.text,http.client,sqlite3;print(round((time.perf_counter()-t)*1000,1))';
    const plain: number[] = [];
    const mirrored: number[] = [];
    const { execFileSync } = await import('node:child_process');
    for (let i = 0; i < 3; i++) plain.push(Number(execFileSync('python3', ['-c', script]).toString()));
    const r = await exec([], ['sh', '-c', `for i in 1 2 3; do python3 -c '${script}'; done`], { MIRRORD_LOG: 'debug' });
    mirrored.push(...r.stdout.trim().split('\n').map(Number));
    const asked = r.stderr.split('\n').filter((l) => /files.*(\/usr\/lib\/python|site-packages)/.test(l));
    assert.deepEqual(asked, [], 'no question about the standard library reached the intproxy');
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[1]!;
    assert.ok(med(mirrored) < med(plain) * 1.5 + 15, `imports: ${med(mirrored)} ms under mirrord vs ${med(plain)} ms without`);
  });
});
