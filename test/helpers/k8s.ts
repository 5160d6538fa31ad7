/**
 * Helpers for the Kubernetes tier (test/k8s/*.test.ts): clients for the cluster KUBECONFIG names
 * (test/cluster/up's, or any other such as kind), test namespaces, waiting, exec, port-forward and
 * the test images, all through @kubernetes/client-node as the CLI itself will use it.
 *
 * Images: the tests run images built on the local Docker engine. test/run-all.sh loads them into
 * the cluster before the tier (`node --import tsx test/helpers/k8s.ts images` prints their names).
 * A test file run on its own loads them itself through MIRRORD_K8S_LOAD_IMAGE (a command that takes
 * image names, e.g. `kind load docker-image --name dev`), or test/cluster/load-image when
 * KUBECONFIG is the one test/cluster/up wrote. MIRRORD_K8S_IMAGES_LOADED=1 skips loading.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { createLogger, parseLevel } from '../../common/log.js';
import { agentImageRecipe } from '../../src/images/recipes.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { RUN_ID, TEST_LABEL, docker, toolsImage } from './docker-fixtures.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const log = createLogger('test-k8s', parseLevel(process.env.MIRRORD_LOG));
const run = promisify(execFile);

export { TEST_LABEL, RUN_ID };

export interface Clients {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  batch: k8s.BatchV1Api;
}

let clients: Clients | undefined;
/** Clients for the cluster KUBECONFIG points to; a clear error when it points nowhere. */
export function kube(): Clients {
  if (clients) return clients;
  if (!process.env.KUBECONFIG) {
    throw new Error(
      'KUBECONFIG is not set: start the test cluster with `eval "$(test/cluster/up | tail -n 1 | sed s/^/export\\ /)"`, or point KUBECONFIG at an existing cluster',
    );
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  clients = { kc, core: kc.makeApiClient(k8s.CoreV1Api), apps: kc.makeApiClient(k8s.AppsV1Api), batch: kc.makeApiClient(k8s.BatchV1Api) };
  return clients;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a value other than undefined/false; the error names `what` and the last failure. */
export async function waitFor<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 120_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${errText(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

export function errText(err: unknown): string {
  if (err instanceof k8s.ApiException)
    return `HTTP ${err.code}: ${typeof err.body === 'string' ? err.body.slice(0, 300) : JSON.stringify(err.body).slice(0, 300)}`;
  return err instanceof Error ? err.message : String(err);
}

export function isNotFound(err: unknown): boolean {
  return err instanceof k8s.ApiException && err.code === 404;
}

/** A namespace for one test file, labelled with this run's id; remove() deletes it (and all in it). */
export async function createTestNamespace(prefix: string): Promise<{ name: string; remove(): Promise<void> }> {
  const { core } = kube();
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name, labels: { [TEST_LABEL]: RUN_ID } } } });
  // Pods need the namespace's default service account, which the controller-manager creates.
  await waitFor(`service account default in ${name}`, () => core.readNamespacedServiceAccount({ name: 'default', namespace: name }).then(() => true), 60_000);
  return {
    name,
    remove: async () => {
      await core.deleteNamespace({ name }).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    },
  };
}

/** Waits until `count` pods matching the label selector are Ready; returns them. */
export async function waitForReadyPods(namespace: string, labelSelector: string, count: number, timeoutMs = 180_000): Promise<k8s.V1Pod[]> {
  const { core } = kube();
  return waitFor(
    `${count} ready pod(s) ${labelSelector} in ${namespace}`,
    async () => {
      const pods = (await core.listNamespacedPod({ namespace, labelSelector })).items.filter((p) => !p.metadata?.deletionTimestamp);
      const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      if (ready.length >= count) return ready;
      const waiting = pods
        .flatMap((p) => p.status?.containerStatuses ?? [])
        .map((s) => s.state?.waiting?.reason)
        .filter((r) => r && r !== 'ContainerCreating');
      if (waiting.length) throw new Error(`containers waiting: ${waiting.join(', ')}`);
      return undefined;
    },
    timeoutMs,
  );
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in a container through the API server (the exec subresource, WebSocket). */
export async function execInPod(namespace: string, pod: string, container: string, command: string[], timeoutMs = 60_000): Promise<ExecResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        into.push(Buffer.from(chunk));
        cb();
      },
    });
  const exec = new k8s.Exec(kube().kc);
  return new Promise<ExecResult>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`exec ${JSON.stringify(command)} in ${namespace}/${pod}: no result after ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    exec
      .exec(namespace, pod, container, command, sink(out), sink(err), null, false, (status) => {
        clearTimeout(timer);
        let code = status.status === 'Success' ? 0 : -1;
        const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
        if (cause?.message) code = Number(cause.message);
        // The status can arrive just before the last output frames; let them land.
        setTimeout(() => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }), 50);
      })
      .catch((e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(errText(e)));
      });
  });
}

/**
 * Forwards a local loopback port to `port` of the pod through the API server (the portforward
 * subresource, as `kubectl port-forward` does). One WebSocket per accepted connection.
 */
export async function portForward(namespace: string, pod: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
  const forward = new k8s.PortForward(kube().kc);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const errors = new PassThrough();
    errors.on('data', (d: Buffer) => log.debug(`port-forward ${pod}:${port}: ${d.toString().trim()}`));
    forward.portForward(namespace, pod, [port], socket, errors, socket).then(
      (ws) => {
        const w = typeof ws === 'function' ? ws() : ws;
        socket.on('close', () => w?.close());
      },
      (err: unknown) => {
        log.debug(`port-forward ${pod}:${port} failed: ${errText(err)}`);
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const local = (server.address() as net.AddressInfo).port;
  return {
    port: local,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The smoke test's app: a tiny HTTP server on 8080 answering with its pod's name. */
export function smokeImage(): Promise<string> {
  return toolsImage().then((tools) =>
    ensureImage(
      docker(),
      {
        repository: 'mirrord-k8s-smoke',
        files: {
          Dockerfile: 'ARG TOOLS_IMAGE\nFROM ${TOOLS_IMAGE}\nCOPY server.py /srv/server.py\nCMD ["python3", "-u", "/srv/server.py"]\n',
          'server.py': [
            'import http.server, os, socket',
            'class H(http.server.BaseHTTPRequestHandler):',
            '    def do_GET(self):',
            '        body = ("hello from " + socket.gethostname() + "\\n").encode()',
            '        self.send_response(200)',
            '        self.send_header("Content-Length", str(len(body)))',
            '        self.end_headers()',
            '        self.wfile.write(body)',
            '    def log_message(self, fmt, *args):',
            '        print("request " + self.path, flush=True)',
            'print("smoke-app listening on 8080 in " + socket.gethostname(), flush=True)',
            'http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()',
            '',
          ].join('\n'),
        },
        buildArgs: { TOOLS_IMAGE: tools },
        labels: { 'dev.mirrord.component': 'test-k8s-smoke' },
      },
      { progress: quietProgress, log },
    ),
  );
}

/** Every image the Kubernetes tier runs, built on the local Docker engine if missing. */
export async function k8sTestImages(): Promise<string[]> {
  return [await toolsImage(), await smokeImage(), await agentImage()];
}

/** The agent image of this build, which Kubernetes sessions run (agent.image default). */
export function agentImage(): Promise<string> {
  return ensureImage(docker(), agentImageRecipe(), { progress: quietProgress, log });
}

/** Loads images into the cluster unless run-all.sh already did (see the top of this file). */
export async function ensureImagesLoaded(images: string[]): Promise<void> {
  if (process.env.MIRRORD_K8S_IMAGES_LOADED === '1') return;
  const custom = process.env.MIRRORD_K8S_LOAD_IMAGE;
  const ours = path.join(REPO_ROOT, 'test/cluster/load-image');
  if (custom) {
    await run('sh', ['-c', `${custom} "$@"`, 'load-image', ...images], { maxBuffer: 16 << 20 });
  } else if (existsSync(ours) && process.env.KUBECONFIG?.startsWith(`${process.env.MIRRORD_TEST_CLUSTER_STATE ?? '/var/lib/mirrord-test-cluster'}/`)) {
    await run(ours, images, { maxBuffer: 16 << 20 });
  } else {
    log.debug(`not loading ${images.join(' ')}: set MIRRORD_K8S_LOAD_IMAGE for this cluster; assuming the images are there`);
  }
}

/** True when the API server KUBECONFIG names answers (with those credentials) within `timeoutMs`. */
export async function clusterReachable(timeoutMs = 10_000): Promise<boolean> {
  try {
    const version = kube().kc.makeApiClient(k8s.VersionApi);
    await Promise.race([version.getCode(), sleep(timeoutMs).then(() => Promise.reject(new Error('timeout')))]);
    await kube().core.listNamespace({ limit: 1 });
    return true;
  } catch (err) {
    log.debug(`cluster not reachable: ${errText(err)}`);
    return false;
  }
}

// Used by test/run-all.sh:
//   node --import tsx test/helpers/k8s.ts images     build the tier's images, print one name a line
//   node --import tsx test/helpers/k8s.ts reachable  exit 0 when KUBECONFIG's cluster answers
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cmd = process.argv[2];
  try {
    if (cmd === 'images') {
      for (const image of await k8sTestImages()) console.log(image);
    } else if (cmd === 'reachable') {
      process.exitCode = process.env.KUBECONFIG && (await clusterReachable()) ? 0 : 1;
    } else {
      process.stderr.write('usage: node --import tsx test/helpers/k8s.ts images|reachable\n');
      process.exitCode = 64;
    }
  } catch (err) {
    process.stderr.write(`k8s ${cmd}: ${errText(err)}\n`);
    process.exitCode = 1;
  }
  // Keep-alive sockets of the API client would hold the process open.
  process.exit();
}
