/**
 * A Codespace on Kubernetes, as docs/codespaces.md sets it up: its devcontainer.json example (only
 * the image, the target and its namespace replaced by the test's), a local image with the
 * `codespace` user (uid 1000, passwordless sudo), CODESPACES=true, and the test cluster's
 * kubeconfig as a base64 secret passed by `devcontainer up --secrets-file`, as Codespaces passes
 * its secrets to lifecycle commands. The target is a Deployment of the tier's app.
 * Run: `node --import tsx --test test/k8s/devcontainer-codespace.test.ts` with KUBECONFIG set.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildFeature, codespaceImage, DEVCONTAINER, FEATURE_DIR, REPO, run, removeDevContainers } from '../helpers/devcontainer.js';
import { docker } from '../helpers/docker-fixtures.js';
import { CONFIG_YAML, FROM_CONFIGMAP, deployApp } from '../helpers/k8s-app.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, RUN_ID, TEST_LABEL, waitFor } from '../helpers/k8s.js';

/** The example of docs/codespaces.md: the whole devcontainer.json (features and hostRequirements), comments stripped. */
function docsExample(): Record<string, unknown> & { features: Record<string, Record<string, unknown>> } {
  const text = readFileSync(path.join(REPO, 'docs/codespaces.md'), 'utf8');
  const block = [...text.matchAll(/```jsonc\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('"hostRequirements"') && b.includes('"features"'));
  assert.ok(block, 'docs/codespaces.md has its devcontainer.json example');
  return JSON.parse(block.replace(/^\s*\/\/.*$/gm, '')) as ReturnType<typeof docsExample>;
}

describe('a Codespace on Kubernetes (kubeconfig secret, Deployment target)', { timeout: 900_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let work = '';
  let devc = '';
  let devcImage = '';
  let upLog = '';
  const idLabel = `dev.mirrord.devcontainer-test=k8s-codespace-${RUN_ID}`;
  const asUser = async (args: string[]) => (await run('docker', ['exec', '-u', 'codespace', devc, ...args], { timeout: 60_000 })).stdout;
  const fromDevc = async (file: string) => {
    // docker cp -L: the engine's view of the dev container's file system (no layer), links followed.
    const dest = mkdtempSync(path.join(work, 'cp-'));
    await run('docker', ['cp', '-L', `${devc}:${file}`, dest]);
    return readFileSync(path.join(dest, path.basename(file)), 'utf8');
  };

  before(async () => {
    buildFeature();
    const images = await k8sTestImages();
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-codespace');
    await deployApp(ns.name, images[0]!, images[1]!);
    const image = await codespaceImage(images[0]!);
    work = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-codespace-'));
    mkdirSync(path.join(work, '.devcontainer'));
    cpSync(FEATURE_DIR, path.join(work, '.devcontainer/mirrord'), { recursive: true });
    const example = docsExample();
    const config = {
      ...example,
      image,
      containerEnv: { CODESPACES: 'true' },
      features: { './mirrord': { ...example.features['./mirrord'], target: 'deployment/app', namespace: ns.name } },
      runArgs: ['--label', `${TEST_LABEL}=${RUN_ID}`],
    };
    writeFileSync(path.join(work, '.devcontainer/devcontainer.json'), JSON.stringify(config, null, 2));
    const secret = Object.keys(example.secrets as object)[0]!;
    writeFileSync(path.join(work, 'secrets.json'), JSON.stringify({ [secret]: readFileSync(process.env.KUBECONFIG!).toString('base64') }), { mode: 0o600 });
  });

  after(async () => {
    await removeDevContainers(idLabel, [devcImage]);
    await ns?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('devcontainer up --secrets-file: the session on the Deployment starts as codespace, from the secret', async () => {
    const r = await run(
      DEVCONTAINER,
      [
        'up',
        '--workspace-folder',
        work,
        '--secrets-file',
        path.join(work, 'secrets.json'),
        '--buildkit',
        'never',
        '--update-remote-user-uid-default',
        'never',
        '--id-label',
        idLabel,
      ],
      { maxBuffer: 64 << 20, timeout: 600_000 },
    ).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`devcontainer up failed\n${err.stdout}\n${err.stderr}`));
    upLog = r.stderr;
    devc = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { containerId: string }).containerId;
    devcImage = (await docker().getContainer(devc).inspect()).Config.Image;
    assert.match(upLog, /mirrord: session on deployment\/app\S* .*live \(daemon \d+\); every new process runs in its context/);
    assert.doesNotMatch(upLog, /mirrord: warning/);
    assert.match(await asUser(['mirrord', 'devcontainer', 'status']), /^mirrord: session on deployment\/app.* live \(daemon \d+, since .*, preload all\)\n$/);
    // Decoded from the secret, the user's only.
    assert.equal((await asUser(['stat', '-c', '%U %a', '/run/mirrord/kubeconfig'])).trim(), 'codespace 600');
  });

  it('a Service name only the cluster resolves answers from inside the dev container', async () => {
    assert.equal((await asUser(['redis-cli', '-h', 'redis', 'ping'])).trim(), 'PONG');
    assert.equal((await asUser(['sh', '-c', 'echo "$FROM_CONFIGMAP $CODESPACES"'])).trim(), `${FROM_CONFIGMAP} true`);
  });

  it("the pod's ConfigMap and service-account token are at their paths in the dev container", async () => {
    assert.equal(await fromDevc('/etc/app/config.yaml'), CONFIG_YAML);
    assert.equal(await fromDevc('/var/run/secrets/kubernetes.io/serviceaccount/namespace'), ns.name);
    assert.match(await fromDevc('/var/run/secrets/kubernetes.io/serviceaccount/token'), /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('docker stop of the dev container: the agent leaves', async () => {
    await docker().getContainer(devc).stop({ t: 5 });
    const sel = { namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' };
    await waitFor(
      'no agent Job or pod left',
      async () => {
        const [jobs, pods] = await Promise.all([kube().batch.listNamespacedJob(sel), kube().core.listNamespacedPod(sel)]);
        return jobs.items.length + pods.items.length === 0;
      },
      120_000,
    );
  });
});
