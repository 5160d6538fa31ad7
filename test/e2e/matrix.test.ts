/**
 * The program matrix (issue 6, item 5): real programs on the host, each run under
 * `mirrord exec -t docker/TARGET`, must reach a neighbour container by a name only the target
 * resolves, and read one of the target's environment variables. Every neighbour reports the
 * address the connection came from, which must be the target's own (the agent dialled it), not
 * the host's bridge address (the program connected directly). A program that cannot pass today
 * has a test asserting what it does instead, with the reason, so the test flips when it changes.
 *
 * Host toolchains: python3 (+ requests, or a venv with it), node, curl, redis-cli, psql, git, javac
 * + java, go (cgo), cargo. Built programs are cached by the hash of their source under
 * $XDG_CACHE_HOME/mirrord-tests (default ~/.cache/mirrord-tests).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createLogger, parseLevel } from '../../common/log.js';
import { ensureImage } from '../../src/images/build.js';
import { quietProgress } from '../../src/progress.js';
import { runCli, runPlain } from '../helpers/cli.js';
import { createNetwork, docker, runContainer, type TestContainer } from '../helpers/docker-fixtures.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(HERE, 'matrix');
const CACHE = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'mirrord-tests');

const tag = randomBytes(3).toString('hex');
const WHOAMI = `whoami-${tag}`;
const REDIS = `kv-${tag}`;
const PG = `pg-${tag}`;
const GIT = `git-${tag}`;
const GREETING = `hello-from-target-${tag}`;
const PASSWORD = `pw-${tag}`;
const WHOAMI_URL = `http://${WHOAMI}:8080`;

/** Answers every GET with the client address it saw, the path and the X-Greeting header. */
const WHOAMI_PY = `
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("peer=%s path=%s greeting=%s\\n" % (self.client_address[0], self.path, self.headers.get("X-Greeting", "none"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
`;

let network: { name: string; remove(): Promise<void> };
const containers: TestContainer[] = [];
let target: TestContainer;
let gitServer: TestContainer;
let targetIp = '';

function serversImage(): Promise<string> {
  return ensureImage(
    docker(),
    {
      repository: 'mirrord-test-matrix-servers',
      files: { Dockerfile: readFileSync(path.join(HERE, '../images/matrix-servers.Dockerfile')) },
      labels: { 'dev.mirrord.component': 'test-matrix-servers' },
    },
    { progress: quietProgress, log: createLogger('test', parseLevel(process.env.MIRRORD_LOG)) },
  );
}

/** The program under mirrord; every variable of the target except http_proxy (only curl's test uses it). */
function exec(cmd: string[], opts: { keepProxy?: boolean; timeoutMs?: number } = {}) {
  return runCli(['exec', '-t', `docker/${target.name}`, ...(opts.keepProxy ? [] : ['-x', 'http_proxy']), '--', ...cmd], {
    timeoutMs: opts.timeoutMs ?? 90_000,
  });
}

const show = (r: { code: number | null; stdout: string; stderr: string }) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** What the whoami neighbour answers to a request that really left from the target. */
function assertFromTarget(r: { code: number | null; stdout: string; stderr: string }, pathPart: string, greeting = GREETING): void {
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, new RegExp(`peer=${targetIp.replace(/\./g, '\\.')} path=\\S*${pathPart} greeting=${greeting}`), show(r));
}

// ---- host toolchains: build once per source hash ----------------------------------------------

function hashOf(files: string[], extra = ''): string {
  const h = createHash('sha256').update(extra);
  for (const f of files) h.update(f).update(readFileSync(path.join(SRC, f)));
  return h.digest('hex').slice(0, 12);
}

/** Builds into a fresh directory and renames it into place, so a killed build is never reused. */
function cached(name: string, files: string[], artefact: string, build: (dir: string) => void): string {
  const dir = path.join(CACHE, `${name}-${hashOf(files, name)}`);
  if (existsSync(path.join(dir, artefact))) return path.join(dir, artefact);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const f of files) copyFileSync(path.join(SRC, f), path.join(tmp, f));
  build(tmp);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return path.join(dir, artefact);
}

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync('nice', [cmd, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });

const buildJava = () => cached('java', ['Main.java'], 'Main.class', (d) => run('javac', ['-d', '.', 'Main.java'], d));
const buildGo = () =>
  cached('go-cgo', ['main.go', 'go.mod'], 'matrix-go', (d) =>
    run('go', ['build', '-tags', 'netcgo', '-o', 'matrix-go', '.'], d, { CGO_ENABLED: '1', GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' }),
  );
const buildRust = () =>
  cached('rust-std', ['main.rs', 'Cargo.toml'], 'target/release/matrix-rs', (d) => run('cargo', ['build', '--offline', '--release', '-q'], d));

/** A python3 that has `requests`: the one on PATH, else a venv under the cache with it installed. */
function pythonWithRequests(): string {
  if (spawnSync('python3', ['-c', 'import requests'], { stdio: 'ignore' }).status === 0) return 'python3';
  const venv = path.join(CACHE, 'py-requests');
  const py = path.join(venv, 'bin', 'python3');
  if (existsSync(py) && spawnSync(py, ['-c', 'import requests'], { stdio: 'ignore' }).status === 0) return py;
  run('python3', ['-m', 'venv', venv], CACHE);
  run(py, ['-m', 'pip', 'install', '-q', 'requests'], CACHE);
  return py;
}

describe('program matrix under mirrord exec -t docker/TARGET', { timeout: 900_000 }, () => {
  before(async () => {
    mkdirSync(CACHE, { recursive: true });
    network = await createNetwork('mirrord-matrix');
    const servers = await serversImage();
    const started = await Promise.all([
      runContainer({ name: 'matrix-whoami', network: network.name, aliases: [WHOAMI], cmd: ['python3', '-c', WHOAMI_PY], waitFor: { tcpPort: 8080 } }),
      runContainer({
        name: 'matrix-redis',
        network: network.name,
        aliases: [REDIS],
        cmd: ['redis-server', '--requirepass', PASSWORD, '--protected-mode', 'no'],
        waitFor: { tcpPort: 6379 },
      }),
      runContainer({
        name: 'matrix-pg',
        image: servers,
        network: network.name,
        aliases: [PG],
        cmd: [
          'su',
          'postgres',
          '-s',
          '/bin/sh',
          '-c',
          'exec /usr/local/pgbin/postgres -D /var/pgdata -c config_file=/etc/pgmain/postgresql.conf -c listen_addresses=*',
        ],
        waitFor: { tcpPort: 5432 },
      }),
      runContainer({
        name: 'matrix-git',
        image: servers,
        network: network.name,
        aliases: [GIT],
        cmd: ['git', 'daemon', '--reuseaddr', '--export-all', '--base-path=/srv/git', '--verbose', '--listen=0.0.0.0'],
        waitFor: { tcpPort: 9418 },
      }),
    ]);
    containers.push(...started);
    gitServer = started[3]!;
    target = await runContainer({
      name: 'matrix-target',
      network: network.name,
      cmd: ['sleep', '100000'],
      env: {
        MATRIX_GREETING: GREETING,
        REDISCLI_AUTH: PASSWORD,
        PGHOST: PG,
        PGUSER: 'postgres',
        PGDATABASE: 'postgres',
        PGAPPNAME: `app-${tag}`,
        http_proxy: WHOAMI_URL,
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: `url.git://${GIT}/.insteadOf`,
        GIT_CONFIG_VALUE_0: 'matrix:',
      },
    });
    containers.push(target);
    targetIp = await target.ip(network.name);
  });

  after(async () => {
    await Promise.all(containers.map((c) => c.remove().catch(() => undefined)));
    await network?.remove().catch(() => undefined);
  });

  it('baseline: the neighbour names do not resolve on the host', async () => {
    const r = await runPlain('getent', ['hosts', WHOAMI]);
    assert.notEqual(r.code, 0, r.stdout);
  });

  it('python3 urllib', async () => {
    const py = `import os, urllib.request as u
req = u.Request("${WHOAMI_URL}/urllib", headers={"X-Greeting": os.environ.get("MATRIX_GREETING", "unset")})
print(u.urlopen(req, timeout=10).read().decode().strip())`;
    assertFromTarget(await exec(['python3', '-c', py]), '/urllib');
  });

  it('python3 requests', async () => {
    const python = pythonWithRequests();
    const py = `import os, requests
r = requests.get("${WHOAMI_URL}/requests", headers={"X-Greeting": os.environ.get("MATRIX_GREETING", "unset")}, timeout=10)
print(r.text.strip())`;
    assertFromTarget(await exec([python, '-c', py]), '/requests');
  });

  it('node http.get', async () => {
    const js = `require("http").get("${WHOAMI_URL}/node-http", { headers: { "X-Greeting": process.env.MATRIX_GREETING } }, (res) => {
      let b = ""; res.on("data", (d) => (b += d)); res.on("end", () => console.log(b.trim())); }).on("error", (e) => { console.error(e.message); process.exit(3); });`;
    assertFromTarget(await exec(['node', '-e', js]), '/node-http');
  });

  it('node fetch', async () => {
    const js = `fetch("${WHOAMI_URL}/node-fetch", { headers: { "X-Greeting": process.env.MATRIX_GREETING } })
      .then((r) => r.text()).then((t) => console.log(t.trim()), (e) => { console.error(e.cause?.code ?? e.message); process.exit(3); });`;
    assertFromTarget(await exec(['node', '-e', js]), '/node-fetch');
  });

  it("node dns.resolve4 (c-ares: its own UDP queries, bypassing getaddrinfo) asks the target's nameserver", async () => {
    const js = `console.log("env=" + process.env.MATRIX_GREETING);
      const r = new (require("dns").promises.Resolver)({ timeout: 3000, tries: 1 });
      r.resolve4("${WHOAMI}").then((a) => console.log("resolved=" + a.join(",")), (e) => console.log("error=" + e.code));`;
    const r = await exec(['node', '-e', js]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`env=${GREETING}`));
    const whoami = containers.find((c) => c.name.startsWith('matrix-whoami'))!;
    assert.match(r.stdout, new RegExp(`resolved=${(await whoami.ip(network.name)).replace(/\./g, '\\.')}$`, 'm'), show(r));
  });

  it("curl (the Debian package, dynamically linked), through the target's http_proxy", async () => {
    // The URL's host exists nowhere: only the target's http_proxy (the whoami neighbour) can answer.
    const r = await exec(['curl', '-sS', '--max-time', '10', '-H', `X-Greeting: curl`, 'http://only-through-the-proxy.invalid/curl'], { keepProxy: true });
    assertFromTarget(r, 'only-through-the-proxy.invalid/curl', 'curl');
  });

  it("redis-cli, authenticated with the target's REDISCLI_AUTH", async () => {
    const r = await exec(['redis-cli', '-h', REDIS, '--no-auth-warning', 'CLIENT', 'INFO'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`addr=${targetIp.replace(/\./g, '\\.')}:\\d+`), show(r));
  });

  it("psql, connecting by the target's PGHOST/PGUSER/PGAPPNAME", async () => {
    const r = await exec(['psql', '-X', '-A', '-t', '-c', "select host(inet_client_addr()) || ' ' || current_setting('application_name')"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), `${targetIp} app-${tag}`, show(r));
  });

  it("git ls-remote git://NAME/repo (and the target's url.insteadOf from GIT_CONFIG_*)", async () => {
    const direct = await exec(['git', 'ls-remote', `git://${GIT}/repo.git`]);
    assert.equal(direct.code, 0, show(direct));
    assert.match(direct.stdout, /^[0-9a-f]{40}\trefs\/heads\/main$/m, show(direct));
    const viaEnv = await exec(['git', 'ls-remote', 'matrix:repo.git']);
    assert.equal(viaEnv.code, 0, show(viaEnv));
    assert.equal(viaEnv.stdout, direct.stdout);
    const logs = (await docker().getContainer(gitServer.id).logs({ stdout: true, stderr: true })).toString('latin1');
    // 127.0.0.1 is the readiness probe run inside the daemon's own container.
    const peers = [...logs.matchAll(/Connection from ([0-9.]+):\d+/g)].map((m) => m[1]).filter((p) => p !== '127.0.0.1');
    assert.ok(peers.length >= 2 && peers.every((p) => p === targetIp), `git daemon saw ${peers.join(', ')}, expected ${targetIp}`);
  });

  it('java HttpClient (OpenJDK, compiled with javac at test time)', async () => {
    const cls = buildJava();
    assertFromTarget(await exec(['java', '-cp', path.dirname(cls), 'Main', `${WHOAMI_URL}/java`]), '/java');
  });

  it('a Go program built with cgo (netcgo): names resolve remotely, but connect() is a raw syscall', async () => {
    // Go's net package resolves through getaddrinfo (cgo, so the layer answers), then calls the
    // connect system call directly, not through libc: LD_PRELOAD never sees it. The connection goes
    // from the host straight to the container address the target resolved, and reaches it only
    // because the host routes to Docker's bridge networks. Flips when connect is caught otherwise.
    const bin = buildGo();
    const r = await exec([bin, `${WHOAMI_URL}/go`]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`path=/go greeting=${GREETING}`), show(r));
    const peer = /peer=([0-9.]+)/.exec(r.stdout)?.[1];
    assert.notEqual(
      peer,
      targetIp,
      `the Go program's connection came from the target: connect() interception works for Go now, update this test and docs/compatibility.md\n${show(r)}`,
    );
  });

  it('a Rust program using std (TcpStream::connect("name:port"))', async () => {
    const bin = buildRust();
    assertFromTarget(await exec([bin, `${WHOAMI}:8080`, '/rust']), '/rust');
  });
});
