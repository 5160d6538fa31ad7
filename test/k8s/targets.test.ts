/**
 * Kubernetes targets end to end: the real CLI, layer and agent against the tier's real cluster.
 * Run: `node --import tsx --test test/k8s/targets.test.ts` with KUBECONFIG set (see test/helpers/k8s.ts).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { findContainerPid } from '../../agent/src/kube/find-pid.js';
import { CLI, runCli } from '../helpers/cli.js';
import { runContainer } from '../helpers/docker-fixtures.js';
import {
  CONFIG_YAML,
  FROM_CONFIGMAP,
  FROM_SECRET,
  curlApp as curlService,
  deployApp,
  execUnderMirrord,
  podNat,
  serveUnderMirrord,
  type AppFixture,
} from '../helpers/k8s-app.js';
import { createTestNamespace, ensureImagesLoaded, k8sTestImages, kube, waitFor } from '../helpers/k8s.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

describe('Kubernetes targets', { timeout: 1_200_000 }, () => {
  let ns: { name: string; remove(): Promise<void> };
  let app: AppFixture;
  let appPod = '';
  let tmp = '';
  const restarts = async () => (await kube().core.readNamespacedPod({ name: appPod, namespace: ns.name })).status?.containerStatuses?.[0]?.restartCount;
  const config = (name: string, body: object) => {
    const f = path.join(tmp, `${name}.json`);
    writeFileSync(f, JSON.stringify(body));
    return f;
  };
  const mirrord = (args: string[], opts: Parameters<typeof runCli>[1] = {}) => runCli(args, { timeoutMs: 120_000, ...opts });

  before(async () => {
    const images = await k8sTestImages();
    await ensureImagesLoaded(images);
    ns = await createTestNamespace('mirrord-targets');
    app = await deployApp(ns.name, images[0]!, images[1]!);
    appPod = app.appPod.metadata!.name!;
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mirrord-k8s-'));
  });

  after(async () => {
    await ns?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** The agent Jobs and pods of the namespace; empty once every session's TTL has passed. */
  const agentObjects = async () => {
    const sel = { namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' };
    const [jobs, pods] = await Promise.all([kube().batch.listNamespacedJob(sel), kube().core.listNamespacedPod(sel)]);
    return [...jobs.items, ...pods.items].map((o) => `${o.kind ?? ''}${o.metadata?.name}`);
  };
  const noAgentLeft = () => waitFor('no agent Job or pod left', async () => (await agentObjects()).length === 0, 90_000);

  /** The nat table of the app pod's network namespace, read from this host (the cluster runs here). */
  const appNat = () => podNat(ns.name, appPod);
  const curlApp = (header?: string) => curlService(app, '/', header);
  const curlAppPath = (urlPath: string) => curlService(app, urlPath);

  /**
   * `python3 -m http.server` serving `body` locally under `mirrord exec` on deployment/app, on a free
   * port that port_mapping ties to the pod's 8080, with the given incoming settings.
   */
  const serveLocally = async (name: string, incoming: object, body: string) => {
    const port = await freePort();
    const cfg = config(name, { feature: { network: { incoming: { ...incoming, port_mapping: [[port, 8080]] } } } });
    writeFileSync(path.join(tmp, 'index.html'), body);
    return serveUnderMirrord(ns.name, 'deployment/app', cfg, port, tmp);
  };

  it("deployment/app: redis-cli reaches a Service name only the cluster resolves, from the pod's address", async () => {
    const before = await restarts();
    const r = await mirrord(['exec', '-n', ns.name, '-t', 'deployment/app', '--', 'sh', '-c', 'redis-cli -h redis ping && redis-cli -h redis client list']);
    assert.equal(r.code, 0, r.stderr);
    const [pong, ...clients] = r.stdout.trim().split('\n');
    assert.equal(pong, 'PONG');
    const podIP = app.appPod.status!.podIP!;
    assert.ok(
      clients.some((l) => l.includes(`addr=${podIP}:`)),
      `redis saw the app pod ${podIP}: ${clients.join(' | ')}`,
    );
    // Without mirrord the name means nothing here.
    const plain = await run('redis-cli', ['-h', 'redis', 'ping']).catch((e: { stdout?: string; stderr?: string }) => e);
    assert.notEqual((plain as { stdout?: string }).stdout?.trim(), 'PONG');
    assert.equal(await restarts(), before, 'the target pod never restarted');
  });

  it('mirrord up: a Deployment service (inferred from its name in the namespace) beside a Docker one', async () => {
    const side = await runContainer({ name: 'k8s-up-side', env: { WHO: 'docker-side' }, cmd: ['sleep', 'infinity'] });
    try {
      const file = path.join(tmp, 'mirrord-up.yaml');
      writeFileSync(
        file,
        `services:
  app:
    target: { namespace: ${ns.name} }
    default_mode: mirror
    run: { type: exec, command: [sh, -c, 'sleep 1; echo "cm=$FROM_CONFIGMAP"; redis-cli -h redis ping'] }
  side:
    target: docker/${side.name}
    default_mode: mirror
    run: { type: exec, command: [sh, -c, 'echo "who=$WHO"; exec sleep 60'] }
`,
      );
      const r = await mirrord(['up', '-f', file, '--no-color']);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      const lines = r.stdout.split('\n');
      assert.ok(lines.includes(`app  | cm=${FROM_CONFIGMAP}`), r.stdout);
      assert.ok(lines.includes('app  | PONG'), r.stdout);
      assert.ok(lines.includes('side | who=docker-side'), r.stdout);
    } finally {
      await side.remove();
    }
    await noAgentLeft();
  });

  it('pod/APP: env from a ConfigMap and a Secret, a ConfigMap-mounted file and the service-account token', async () => {
    const script =
      'echo "$FROM_CONFIGMAP"; echo "$FROM_SECRET"; cat /etc/app/config.yaml; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token';
    const r = await mirrord(['exec', '-n', ns.name, '-t', `pod/${appPod}`, '--', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], FROM_CONFIGMAP);
    assert.equal(lines[1], FROM_SECRET);
    assert.equal(lines.slice(2, 4).join('\n') + '\n', CONFIG_YAML);
    assert.equal(lines[4], ns.name);
    assert.ok(Number(lines[5]) > 100, `a token was read: ${lines[5]}`);
  });

  // dns.resolve* (c-ares) sends its own UDP to the pod's nameserver and, as in the pod itself,
  // applies no search domains; getaddrinfo (dns.lookup) applies them.
  it("DNS: short names through the pod's search domains, and resolvers that send their own UDP", async () => {
    const svc = await kube().core.readNamespacedService({ name: 'redis', namespace: ns.name });
    const ip = svc.spec!.clusterIP!;
    const r = await mirrord([
      'exec',
      '-n',
      ns.name,
      '-t',
      'service/app',
      '--',
      'node',
      '-e',
      `const dns = require('dns'); dns.lookup('redis', (e, a) => { console.log(e ? e.code : a); dns.resolve4('redis.${ns.name}.svc.cluster.local', (e2, b) => console.log(e2 ? e2.code : b.join(','))); });`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [ip, ip]);
  });

  it('steal with an HTTP header filter: matching requests reach the local program, others the pod', async () => {
    const local = await serveLocally('steal', { mode: 'steal', http_filter: { header_filter: '^x-mirrord: yes$' } }, 'local\n');
    try {
      await waitFor('the steal to start', async () => (await curlApp('x-mirrord: yes')) === 'local', 60_000, 500);
      assert.equal(await curlApp('x-mirrord: yes'), 'local');
      assert.match(await curlApp(), /^hello from app-/);
      assert.match(await curlApp('x-mirrord: no'), /^hello from app-/);
    } finally {
      await local.stop();
    }
    assert.ok(!/mirrord: (?!running)/.test(local.stderr()), local.stderr());
    await noAgentLeft();
    assert.doesNotMatch(await appNat(), /MIRRORD_/);
    assert.match(await curlApp('x-mirrord: yes'), /^hello from app-/);
  });

  it('mirror (the default): the pod keeps answering and the local program gets a copy of each request', async () => {
    const port = await freePort();
    const cfg = config('mirror', { feature: { network: { incoming: { port_mapping: [[port, 8080]] } } } });
    const local = execUnderMirrord(ns.name, 'deployment/app', cfg, [
      'python3',
      '-u',
      '-c',
      `import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n  def do_GET(self):\n    print("copy of " + self.path, flush=True); self.send_response(200); self.end_headers()\n  def log_message(self, *a): pass\nhttp.server.HTTPServer(("127.0.0.1", ${port}), H).serve_forever()`,
    ]);
    try {
      await waitFor(
        'a mirrored request',
        async () => {
          assert.match(await curlAppPath('/mirrored-path'), /^hello from app-/);
          return local.stdout().includes('copy of /mirrored-path');
        },
        60_000,
        500,
      );
    } finally {
      await local.stop();
    }
    await noAgentLeft();
    assert.doesNotMatch(await appNat(), /MIRRORD_/);
  });

  it('resolves statefulset/, job/, cronjob/ (its running job) and service/ targets to a ready pod', async () => {
    const { apps, batch } = kube();
    const tools = app.appPod.spec!.containers[0]!.image!;
    const podSpec = (label: string): k8s.V1PodTemplateSpec => ({
      metadata: { labels: { app: label } },
      spec: {
        terminationGracePeriodSeconds: 1,
        restartPolicy: label === 'sts' ? 'Always' : 'Never',
        containers: [
          {
            name: 'main',
            image: tools,
            imagePullPolicy: 'Never',
            command: ['sh', '-c', `export WHO=${label}; exec sleep infinity`],
            env: [{ name: 'WHO', value: label }],
          },
        ],
      },
    });
    await apps.createNamespacedStatefulSet({
      namespace: ns.name,
      body: { metadata: { name: 'sts' }, spec: { serviceName: 'sts', replicas: 1, selector: { matchLabels: { app: 'sts' } }, template: podSpec('sts') } },
    });
    await batch.createNamespacedJob({ namespace: ns.name, body: { metadata: { name: 'batch' }, spec: { template: podSpec('batch') } } });
    const cron = await batch.createNamespacedCronJob({
      namespace: ns.name,
      body: { metadata: { name: 'nightly' }, spec: { schedule: '0 0 1 1 *', suspend: true, jobTemplate: { spec: { template: podSpec('nightly') } } } },
    });
    // A run of the CronJob, as its controller would create it (the schedule never fires in a test).
    await batch.createNamespacedJob({
      namespace: ns.name,
      body: {
        metadata: {
          name: 'nightly-run',
          ownerReferences: [{ apiVersion: 'batch/v1', kind: 'CronJob', name: 'nightly', uid: cron.metadata!.uid!, controller: true }],
        },
        spec: { template: podSpec('nightly') },
      },
    });
    // A pod with a mesh sidecar first: the default is the first other container; /container/ picks one.
    await kube().core.createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'multi', labels: { app: 'multi' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: ['istio-proxy', 'main', 'other'].map((name) => ({
            name,
            image: tools,
            imagePullPolicy: 'Never' as const,
            command: ['sleep', 'infinity'],
            env: [{ name: 'WHO', value: name }],
          })),
        },
      },
    });
    for (const [target, who] of [
      ['pod/multi', 'main'],
      ['pod/multi/container/other', 'other'],
      ['statefulset/sts', 'sts'],
      ['job/batch', 'batch'],
      ['cronjob/nightly', 'nightly'],
      ['service/redis', ''],
    ] as const) {
      const r = await waitFor(
        `a session on ${target}`,
        async () => {
          const res = await mirrord(['exec', '-n', ns.name, '-t', target, '--', 'sh', '-c', 'echo "who=$WHO"; redis-cli -h redis ping']);
          return res.code === 0 ? res : res.code === 65 && /no ready pod|not running/.test(res.stderr) ? undefined : Promise.reject(new Error(res.stderr));
        },
        120_000,
        1000,
      );
      assert.deepEqual(r.stdout.trim().split('\n'), [`who=${who}`, 'PONG'], target);
    }
    const ls = (await mirrord(['ls', '-n', ns.name, '--no-docker'])).stdout.split('\n');
    for (const t of ['pod/multi/container/main', 'pod/multi/container/other', 'statefulset/sts', 'job/batch', 'cronjob/nightly'])
      assert.ok(ls.includes(t), `${t} listed: ${ls.join(' ')}`);
    assert.ok(!ls.includes('pod/multi/container/istio-proxy'), 'mesh sidecars are not offered');
  });

  it('rollout/ (Argo Rollouts): resolved through its CRD when installed, a clear message when not', async () => {
    const missing = await mirrord(['exec', '-n', ns.name, '-t', 'rollout/web', '--', 'true']);
    assert.equal(missing.code, 65);
    assert.match(missing.stderr, /Argo Rollouts is not installed/);
    // The CRD alone (no controller): a Rollout selecting the app's pods, as Argo's controller would keep them.
    const ext = kube().kc.makeApiClient(k8s.ApiextensionsV1Api);
    const crd = 'rollouts.argoproj.io';
    await ext.createCustomResourceDefinition({
      body: {
        metadata: { name: crd, labels: { 'dev.mirrord.test': 'true' } },
        spec: {
          group: 'argoproj.io',
          scope: 'Namespaced',
          names: { plural: 'rollouts', singular: 'rollout', kind: 'Rollout' },
          versions: [
            { name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } },
          ],
        },
      },
    });
    try {
      await waitFor(
        'the Rollout CRD to be established',
        async () => {
          const c = await ext.readCustomResourceDefinition({ name: crd });
          return c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True');
        },
        60_000,
      );
      await waitFor(
        'a Rollout to be created',
        () =>
          kube()
            .kc.makeApiClient(k8s.CustomObjectsApi)
            .createNamespacedCustomObject({
              group: 'argoproj.io',
              version: 'v1alpha1',
              namespace: ns.name,
              plural: 'rollouts',
              body: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Rollout', metadata: { name: 'web' }, spec: { selector: { matchLabels: { app: 'app' } } } },
            })
            .then(() => true),
        30_000,
      );
      const r = await mirrord(['exec', '-n', ns.name, '-t', 'rollout/web', '--', 'sh', '-c', 'echo "$FROM_CONFIGMAP"']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), FROM_CONFIGMAP);
      const ls = await mirrord(['ls', '-n', ns.name, '--no-docker']);
      assert.ok(ls.stdout.split('\n').includes('rollout/web'), ls.stdout);
    } finally {
      await ext.deleteCustomResourceDefinition({ name: crd });
    }
  });

  it('after the CLI is killed with SIGKILL mid-steal: no agent, Job or iptables rule remains, the pod never restarted', async () => {
    const before = await restarts();
    const local = await serveLocally('steal-all', { mode: 'steal' }, 'stolen\n');
    try {
      await waitFor('the steal to start', async () => (await curlApp()) === 'stolen', 60_000, 500);
      assert.match(await appNat(), /MIRRORD_/, "the steal rule is in the pod's namespace while the session runs");
    } finally {
      await local.stop('SIGKILL');
    }
    await waitFor('the pod to answer its own clients again', async () => /^hello from app-/.test(await curlApp()), 60_000, 500);
    await noAgentLeft();
    assert.doesNotMatch(await appNat(), /MIRRORD_/);
    assert.equal(await restarts(), before);
  });

  it('the agent process killed mid-steal: its listener removes the rule, the pod answers its own clients again', async () => {
    const local = await serveLocally('steal-guard', { mode: 'steal' }, 'stolen\n');
    try {
      await waitFor('the steal to start', async () => (await curlApp()) === 'stolen', 60_000, 500);
      // The agent child runs in the node's PID namespace (hostPID), so this host sees it.
      const pod = await kube().core.readNamespacedPod({ name: appPod, namespace: ns.name });
      const targetPid = await findContainerPid(pod.status!.containerStatuses![0]!.containerID!);
      const agents: number[] = [];
      for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
        try {
          const env = readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
          if (env.includes('MIRRORD_AGENT_MODE=serve') && env.includes(`MIRRORD_AGENT_TARGET_PID=${targetPid}`)) agents.push(Number(p));
        } catch {
          // Gone, or not ours to read.
        }
      }
      assert.equal(agents.length, 1, `one agent process serves the app pod: ${agents.join(', ')}`);
      process.kill(agents[0]!, 'SIGKILL');
      await waitFor('the pod to answer its own clients again', async () => /^hello from app-/.test(await curlApp()), 30_000, 300);
      assert.doesNotMatch(await appNat(), /MIRRORD_/);
      await waitFor('the CLI to report the lost link', async () => /lost the link to the agent/.test(local.stderr()), 30_000, 200);
    } finally {
      await local.stop();
    }
    await noAgentLeft();
  });

  it('Ctrl-C while the agent starts: the CLI removes the agent Job before it exits', async () => {
    // An agent that can never start keeps the session in its start-up phase.
    const cfg = config('stuck', { agent: { image: 'mirrord-agent:never-there', image_pull_policy: 'IfNotPresent', startup_timeout: 120 } });
    const child = spawn(process.execPath, [CLI, 'exec', '-f', cfg, '-n', ns.name, '-t', 'deployment/app', '--', 'true'], { stdio: 'ignore' });
    const closed = new Promise<NodeJS.Signals | number | null>((r) => child.once('close', (code, signal) => r(signal ?? code)));
    await waitFor('the agent Job to exist', async () => (await agentObjects()).length > 0, 60_000, 200);
    child.kill('SIGINT');
    assert.equal(await closed, 'SIGINT');
    // Left alone, the Job would stay until its listener gave up (startup_timeout + 10 s) and its TTL.
    await waitFor('the agent Job and pod to be gone', async () => (await agentObjects()).length === 0, 20_000, 250);
  });

  it('a CLI killed with SIGKILL while its agent could not start: the next session in the namespace reaps the Job', async () => {
    const cfg = config('stuck-kill', { agent: { image: 'mirrord-agent:never-there', image_pull_policy: 'IfNotPresent', startup_timeout: 120 } });
    const child = spawn(process.execPath, [CLI, 'exec', '-f', cfg, '-n', ns.name, '-t', 'deployment/app', '--', 'true'], { stdio: 'ignore' });
    const closed = new Promise((r) => child.once('close', r));
    const [orphan] = await waitFor(
      'the agent Job to exist',
      async () => {
        const jobs = (await kube().batch.listNamespacedJob({ namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' })).items;
        return jobs.length ? jobs.map((j) => j.metadata!.name!) : undefined;
      },
      60_000,
      200,
    );
    child.kill('SIGKILL');
    await closed;
    // Its pod never runs, so no listener will ever end it: only a reaper can.
    const r = await mirrord(['exec', '-n', ns.name, '-t', 'deployment/app', '--', 'true']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      `the orphan Job ${orphan} to be deleted`,
      async () => {
        const jobs = (await kube().batch.listNamespacedJob({ namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' })).items;
        return !jobs.some((j) => j.metadata?.name === orphan);
      },
      20_000,
      250,
    );
    await noAgentLeft();
  });

  it('ephemeral mode: the agent runs as an ephemeral container in the target pod', async () => {
    const before = await restarts();
    const cfg = config('ephemeral', { agent: { ephemeral: true } });
    const r = await mirrord(['exec', '-f', cfg, '-n', ns.name, '-t', 'deployment/app', '--', 'sh', '-c', 'redis-cli -h redis ping; echo "$FROM_CONFIGMAP"']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['PONG', FROM_CONFIGMAP]);
    const pod = await kube().core.readNamespacedPod({ name: appPod, namespace: ns.name });
    assert.ok(
      pod.spec?.ephemeralContainers?.some((c) => c.name.startsWith('mirrord-agent-')),
      'the agent was an ephemeral container',
    );
    assert.equal(await restarts(), before);
  });

  it('targetless: outgoing traffic and DNS from an agent pod in the namespace, no target env', async () => {
    const r = await mirrord(['exec', '-n', ns.name, '-t', 'targetless', '--', 'sh', '-c', 'redis-cli -h redis ping; echo "cm=$FROM_CONFIGMAP"']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['PONG', 'cm=']);
    await noAgentLeft();
  });

  it('port-forward and diagnose latency work against a Deployment', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'port-forward', '-n', ns.name, '-t', 'deployment/app', '-L', `${port}:redis:6379`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const pong = await waitFor(
        'PONG through the forwarded port',
        async () => {
          const r = await run('redis-cli', ['-p', String(port), 'ping']).catch(() => undefined);
          return r?.stdout.trim() === 'PONG' ? r.stdout.trim() : undefined;
        },
        60_000,
        300,
      );
      assert.equal(pong, 'PONG');
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('close', r));
    }
    const lat = await mirrord(['diagnose', 'latency', '-n', ns.name, '-t', 'deployment/app', '-c', '20', '--output', 'json']);
    assert.equal(lat.code, 0, lat.stderr);
    const j = JSON.parse(lat.stdout) as { roundTrips: number; p50Ms: number; target: string };
    assert.equal(j.roundTrips, 20);
    assert.ok(j.p50Ms > 0, lat.stdout);
    assert.match(j.target, /^deployment\/app \(pod\/app-/);
    await noAgentLeft();
  });

  it("mirrord container: a local container gets the pod's network, env, ConfigMap volume and service-account token", async () => {
    // fs mode local: the files can only come from the mounted-file copy made before the container starts.
    const script = 'redis-cli -h redis ping; echo "$FROM_SECRET"; cat /etc/app/config.yaml; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace';
    const r = await mirrord([
      'container',
      '--fs-mode',
      'local',
      '-n',
      ns.name,
      '-t',
      'deployment/app',
      '--',
      'docker',
      'run',
      '--rm',
      app.appPod.spec!.containers[0]!.image!,
      'sh',
      '-c',
      script,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `PONG\n${FROM_SECRET}\n${CONFIG_YAML}${ns.name}`);
    await noAgentLeft();
  });

  it("mirrord ls lists the namespace's pods and workloads, as text and JSON", async () => {
    const text = await mirrord(['ls', '-n', ns.name, '--no-docker']);
    assert.equal(text.code, 0, text.stderr);
    for (const t of [`pod/${appPod}`, 'deployment/app', 'deployment/redis', 'service/app'])
      assert.ok(text.stdout.split('\n').includes(t), `${t} in ${text.stdout}`);
    const json = await mirrord(['ls', '-n', ns.name, '--no-docker', '--output', 'json']);
    assert.deepEqual(JSON.parse(json.stdout), text.stdout.trim().split('\n'));
  });

  it('errors name the cause: unknown target with close names, no ready pod, missing agent image, unreachable cluster', async () => {
    const unknown = await mirrord(['exec', '-n', ns.name, '-t', 'deployment/ap', '--', 'true']);
    assert.equal(unknown.code, 65);
    assert.match(unknown.stderr, /deployment\/ap not found in namespace .*Did you mean deployment\/app\?/);

    await kube().apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'idle' },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: 'idle' } },
          template: { metadata: { labels: { app: 'idle' } }, spec: { containers: [{ name: 'c', image: 'none' }] } },
        },
      },
    });
    const idle = await mirrord(['exec', '-n', ns.name, '-t', 'deployment/idle', '--', 'true']);
    assert.equal(idle.code, 65);
    assert.match(idle.stderr, /deployment\/idle in namespace .* has no ready pod/);

    const cfg = config('noimage', { agent: { image: 'mirrord-agent:does-not-exist', image_pull_policy: 'Never' } });
    const noImage = await mirrord(['exec', '-f', cfg, '-n', ns.name, '-t', 'deployment/app', '--', 'true']);
    assert.equal(noImage.code, 75, noImage.stderr);
    assert.match(noImage.stderr, /cannot pull the agent image mirrord-agent:does-not-exist .*agent\.image/);
    await noAgentLeft();

    const dead = new k8s.KubeConfig();
    dead.loadFromOptions({
      clusters: [{ name: 'dead', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 'x' }],
      contexts: [{ name: 'dead', cluster: 'dead', user: 'u' }],
      currentContext: 'dead',
    });
    const deadFile = path.join(tmp, 'dead.kubeconfig');
    writeFileSync(deadFile, dead.exportConfig());
    const unreachable = await mirrord(['exec', '--kubeconfig', deadFile, '-t', 'pod/x', '--', 'true']);
    assert.equal(unreachable.code, 69);
    assert.match(unreachable.stderr, /the Kubernetes API at https:\/\/127\.0\.0\.1:1 is not reachable/);
  });

  it('a user bound only to templates/rbac.yaml runs a session; one without it gets the RBAC message', async () => {
    const { core } = kube();
    const rbac = k8s.loadAllYaml(readFileSync(path.join(REPO, 'templates/rbac.yaml'), 'utf8')) as Array<{ kind: string; metadata: k8s.V1ObjectMeta }>;
    const role = rbac.find((o) => o.kind === 'Role') as k8s.V1Role;
    const authz = kube().kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await authz.createNamespacedRole({ namespace: ns.name, body: { ...role, metadata: { ...role.metadata, namespace: ns.name } } });
    const kubeconfigFor = async (sa: string) => {
      await core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: sa } } });
      const tr = await core.createNamespacedServiceAccountToken({ name: sa, namespace: ns.name, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
      const admin = kube().kc;
      const cluster = admin.getCurrentCluster()!;
      const kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: cluster.server, caData: cluster.caData, caFile: cluster.caFile, skipTLSVerify: false }],
        users: [{ name: sa, token: tr.status!.token }],
        contexts: [{ name: sa, cluster: 'c', user: sa, namespace: ns.name }],
        currentContext: sa,
      });
      const file = path.join(tmp, `${sa}.kubeconfig`);
      writeFileSync(file, kc.exportConfig());
      return file;
    };
    const allowed = await kubeconfigFor('dev');
    await authz.createNamespacedRoleBinding({
      namespace: ns.name,
      body: {
        metadata: { name: 'dev-mirrord' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata!.name! },
        subjects: [{ kind: 'ServiceAccount', name: 'dev', namespace: ns.name }],
      },
    });
    const denied = await kubeconfigFor('nobody');
    const ok = await mirrord(['exec', '--kubeconfig', allowed, '-t', 'deployment/app', '--', 'redis-cli', '-h', 'redis', 'ping']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'PONG');
    const no = await mirrord(['exec', '--kubeconfig', denied, '-t', 'deployment/app', '--', 'redis-cli', '-h', 'redis', 'ping']);
    assert.equal(no.code, 69);
    assert.match(no.stderr, /RBAC denied: cannot get deployments app in namespace .*templates\/rbac\.yaml/);
    await noAgentLeft();
  });

  it("a dropped port-forward fails the program's remote calls promptly and is reported", async () => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'exec',
        '-n',
        ns.name,
        '-t',
        'deployment/app',
        '--',
        'sh',
        '-c',
        'redis-cli -h redis ping; while [ ! -e "$STOP" ]; do sleep 0.2; done; redis-cli -h redis ping; echo "second=$?"',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, STOP: path.join(tmp, 'stop') },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    await waitFor('the first PONG', async () => stdout.includes('PONG'), 60_000, 200);
    const agentPods = await kube().core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app.kubernetes.io/name=mirrord-agent' });
    for (const p of agentPods.items) await kube().core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: ns.name, gracePeriodSeconds: 0 });
    await waitFor('the CLI to report the lost link', async () => /lost the link to the agent/.test(stderr), 60_000, 200);
    writeFileSync(path.join(tmp, 'stop'), '');
    const code = await Promise.race([closed, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
    assert.notEqual(code, 'hung', 'the program finished');
    assert.match(stdout, /second=[1-9]/, `the second call failed: ${stdout}`);
    await noAgentLeft();
  });
});
