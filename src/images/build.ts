/**
 * Images the CLI needs (the agent, test images), built on the user's own engine when it lacks them.
 * Everything goes through the Docker API (dockerode), so a remote DOCKER_HOST works the same, except
 * the last-resort debootstrap base, which needs a local engine and root.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { ExitCode, MirrordError, errnoCode } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/log.js';
import type { Progress } from '../progress.js';

export interface ImageRecipe {
  repository: string;
  /** Build context; must include 'Dockerfile'. */
  files: Record<string, string | Buffer>;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface ImageOptions {
  progress: Progress;
  log?: Logger;
  /** Defaults to process.env; tests pass their own. */
  env?: NodeJS.ProcessEnv;
}

export const DEBIAN_SLIM = 'debian:bookworm-slim';
export const MIRRORD_BASE = 'mirrord-base:bookworm';
const PULL_TIMEOUT_MS = 20_000;
const BUILDER_CHATTER = /^(\s*---> |Removing intermediate container |Step \d+\/\d+ : |Successfully (built|tagged) )/;

/** Tag by content: a changed file gives a new tag, so a stale image is never reused. */
export function recipeTag(recipe: ImageRecipe): string {
  const h = createHash('sha256');
  // Length-prefixed fields, so moving bytes between names and contents cannot collide.
  const field = (s: string | Buffer) => {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    h.update(`${b.length}:`);
    h.update(b);
  };
  for (const name of Object.keys(recipe.files).sort()) {
    field(name);
    field(recipe.files[name] ?? '');
  }
  h.update('|args|');
  for (const [k, v] of Object.entries(recipe.buildArgs ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    field(k);
    field(v);
  }
  return `${recipe.repository}:${h.digest('hex').slice(0, 12)}`;
}

export async function imageExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw platformError(`cannot inspect image ${name}`, err);
  }
}

// Two callers in one process asking for the same tag share one build.
const inFlight = new Map<string, Promise<string>>();

export async function ensureImage(docker: Docker, recipe: ImageRecipe, opts: ImageOptions): Promise<string> {
  const tag = recipeTag(recipe);
  const pending = inFlight.get(tag);
  if (pending) return pending;
  const p = ensureImageUncached(docker, recipe, tag, opts).finally(() => inFlight.delete(tag));
  inFlight.set(tag, p);
  return p;
}

async function ensureImageUncached(docker: Docker, recipe: ImageRecipe, tag: string, opts: ImageOptions): Promise<string> {
  const log = (opts.log ?? silentLogger).child('images');
  if (await imageExists(docker, tag)) {
    log.debug(`image ${tag} present`);
    return tag;
  }
  const dockerfile = recipe.files['Dockerfile'];
  if (dockerfile === undefined) {
    throw new MirrordError(`image recipe ${recipe.repository} has no Dockerfile`, ExitCode.Internal);
  }
  const buildargs = { ...recipe.buildArgs };
  if (/^\s*ARG\s+BASE_IMAGE\b/m.test(dockerfile.toString()) && buildargs.BASE_IMAGE === undefined) {
    buildargs.BASE_IMAGE = await ensureBaseImage(docker, opts);
  }
  const label = `building ${recipe.repository} image`;
  opts.progress.update(label);
  log.debug(`building ${tag}`, buildargs);
  const started = Date.now();
  let lastLine = '';
  let failure: string | undefined;
  try {
    const stream = await docker.buildImage(await contextTar(recipe.files), {
      t: tag,
      buildargs,
      labels: { 'dev.mirrord.recipe': recipe.repository, ...recipe.labels },
      rm: true,
      forcerm: true,
    });
    await followProgress(docker, stream, (ev) => {
      if (typeof ev.stream === 'string') {
        for (const line of ev.stream
          .split('\n')
          .map((l) => l.trimEnd())
          .filter(Boolean)) {
          log.debug(`build ${recipe.repository}: ${line}`);
          // The builder's own chatter says nothing about why a step failed; the command's output does.
          if (!BUILDER_CHATTER.test(line)) lastLine = line;
          const step = /^Step (\d+)\/(\d+)/.exec(line);
          if (step) opts.progress.update(`${label}: step ${step[1]}/${step[2]}`);
        }
      }
      if (ev.error) failure = String(ev.errorDetail?.message ?? ev.error).trim();
    });
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
  }
  if (failure !== undefined || !(await imageExists(docker, tag))) {
    const parts = [failure ?? 'no image was produced'];
    if (lastLine && lastLine !== failure) parts.push(`last output: ${lastLine}`);
    throw new MirrordError(`building image ${tag} failed: ${parts.join('; ')}`, ExitCode.Platform, 'Run with MIRRORD_LOG=debug to see the full build output.');
  }
  log.debug(`built ${tag} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return tag;
}

/** tar-stream is imported by the first build only: a session start that finds its image does not load it. */
async function contextTar(files: Record<string, string | Buffer>): Promise<NodeJS.ReadableStream> {
  const { default: tar } = await import('tar-stream');
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) {
    // Fixed mtime so the engine's layer cache does not depend on when we packed.
    pack.entry({ name, mode: name.endsWith('.sh') ? 0o755 : 0o644, mtime: new Date(0) }, content);
  }
  pack.finalize();
  // A streamx Readable: docker-modem only needs .pipe(), which it has.
  return pack as unknown as NodeJS.ReadableStream;
}

interface ProgressEvent {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
}

function followProgress(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (ev: ProgressEvent) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve()), onEvent);
  });
}

// ---- base image -------------------------------------------------------------------------------

const basePromises = new WeakMap<Docker, Promise<string>>();

/** The Debian image that our Dockerfiles start FROM; resolved once per process and engine. */
export function ensureBaseImage(docker: Docker, opts: ImageOptions): Promise<string> {
  let p = basePromises.get(docker);
  if (!p) {
    p = resolveBase(docker, opts);
    basePromises.set(docker, p);
    // A failure is not remembered: the user may fix it (start a pull, install debootstrap) and retry.
    p.catch(() => basePromises.delete(docker));
  }
  return p;
}

interface Strategy {
  name: string;
  /** The image to use, or undefined to move on to the next strategy. */
  attempt(): Promise<string | undefined>;
}

async function resolveBase(docker: Docker, opts: ImageOptions): Promise<string> {
  const log = (opts.log ?? silentLogger).child('base-image');
  const env = opts.env ?? process.env;
  const explicit = env.MIRRORD_BASE_IMAGE;
  const present = (name: string) => async () => ((await imageExists(docker, name)) ? name : undefined);
  const strategies: Strategy[] = explicit
    ? [
        {
          name: `MIRRORD_BASE_IMAGE=${explicit}`,
          async attempt() {
            if ((await imageExists(docker, explicit)) || (await tryPull(docker, explicit, log))) return explicit;
            throw new MirrordError(
              `base image ${explicit} (from MIRRORD_BASE_IMAGE) is not on the Docker engine and cannot be pulled`,
              ExitCode.Platform,
              'Build or load that image first, or unset MIRRORD_BASE_IMAGE.',
            );
          },
        },
      ]
    : [
        { name: `${DEBIAN_SLIM} present locally`, attempt: present(DEBIAN_SLIM) },
        { name: `${MIRRORD_BASE} present locally`, attempt: present(MIRRORD_BASE) },
        { name: `pull ${DEBIAN_SLIM}`, attempt: async () => ((await tryPull(docker, DEBIAN_SLIM, log)) ? DEBIAN_SLIM : undefined) },
        { name: `build ${MIRRORD_BASE} with debootstrap`, attempt: () => debootstrapBase(docker, opts, log) },
      ];
  for (const s of strategies) {
    log.debug(`trying base image strategy: ${s.name}`);
    const image = await s.attempt();
    if (image) {
      log.debug(`base image: ${image} (${s.name})`);
      return image;
    }
    log.debug(`strategy did not apply: ${s.name}`);
  }
  throw new MirrordError(
    'no Debian base image is available to build mirrord images from',
    ExitCode.Platform,
    `Either pull ${DEBIAN_SLIM} (docker pull ${DEBIAN_SLIM}), set MIRRORD_BASE_IMAGE to a Debian-based image the engine has, ` +
      'or install debootstrap (apt-get install debootstrap) and run as root against a local engine',
  );
}

async function tryPull(docker: Docker, image: string, log: Logger): Promise<boolean> {
  // Without a registry the pull fails fast; behind a black-holing firewall the timeout saves us.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), PULL_TIMEOUT_MS);
  try {
    const stream = await docker.pull(image, { abortSignal: abort.signal });
    let error: string | undefined;
    await followProgress(docker, stream, (ev) => {
      if (ev.error) error = ev.error;
    });
    if (error) throw new Error(error);
    return await imageExists(docker, image);
  } catch (err) {
    log.debug(`pull ${image} failed:`, err instanceof Error ? err.message : String(err));
    return false;
  } finally {
    clearTimeout(timer);
  }
}

async function debootstrapBase(docker: Docker, opts: ImageOptions, log: Logger): Promise<string | undefined> {
  const why = await debootstrapUnavailable(docker, opts.env ?? process.env);
  if (why) {
    log.debug(`debootstrap not possible: ${why}`);
    return undefined;
  }
  const lockPath = path.join(os.tmpdir(), 'mirrord-base-image.lock');
  return withFileLock(
    lockPath,
    () => opts.progress.update('waiting for another mirrord to build the base image'),
    async () => {
      // The process we waited for may have built it already.
      if (await imageExists(docker, MIRRORD_BASE)) return MIRRORD_BASE;
      opts.progress.update('building base image with debootstrap (about a minute)');
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mirrord-debootstrap-'));
      const started = Date.now();
      try {
        await runLogged('debootstrap', ['--variant=minbase', 'bookworm', dir], log);
        await importDir(docker, dir, log);
      } finally {
        await removeRootfs(dir, log);
      }
      if (!(await imageExists(docker, MIRRORD_BASE))) {
        throw new MirrordError(`importing ${MIRRORD_BASE} produced no image`, ExitCode.Platform);
      }
      log.debug(`built ${MIRRORD_BASE} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return MIRRORD_BASE;
    },
  );
}

/** Why debootstrap cannot be used here, or undefined when it can. */
async function debootstrapUnavailable(docker: Docker, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const modem = docker.modem as { socketPath?: unknown; host?: unknown };
  // socketPath is a string, or docker-modem's function that finds the default socket.
  if (!modem.socketPath || modem.host || process.platform !== 'linux') return 'the Docker engine is not local (no unix socket)';
  if (process.getuid?.() !== 0) return 'not running as root';
  if (!(await findOnPath('debootstrap', env))) return 'debootstrap is not installed';
  return undefined;
}

async function findOnPath(cmd: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  // debootstrap lives in /usr/sbin, which a non-login root shell may not have on PATH.
  const dirs = [...(env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    const p = path.join(d, cmd);
    try {
      await fs.access(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function runLogged(cmd: string, args: string[], log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin` };
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let last = '';
    const onData = (b: Buffer) => {
      for (const line of b
        .toString()
        .split('\n')
        .filter((l) => l.trim())) {
        last = line;
        log.debug(`${cmd}: ${line}`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => reject(platformError(`cannot run ${cmd}`, err)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new MirrordError(`${cmd} failed (${signal ?? `exit ${code}`}): ${last}`, ExitCode.Platform, 'Run with MIRRORD_LOG=debug to see its output.'));
    });
  });
}

async function importDir(docker: Docker, dir: string, log: Logger): Promise<void> {
  // tar-fs is only a transitive dependency of dockerode, so the system tar (which debootstrap needs anyway) packs.
  const child = spawn('tar', ['-C', dir, '--numeric-owner', '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const [repo, tag] = MIRRORD_BASE.split(':');
  const stream = await docker.importImage(child.stdout, { repo, tag });
  let error: string | undefined;
  await followProgress(docker, stream, (ev) => {
    if (ev.error) error = ev.error;
    else if (ev.status) log.debug(`import: ${ev.status}`);
  });
  const code = await exited;
  if (code !== 0) throw new MirrordError(`tar of the debootstrap tree failed: ${stderr.trim()}`, ExitCode.Platform);
  if (error) throw new MirrordError(`importing ${MIRRORD_BASE} failed: ${error}`, ExitCode.Platform);
}

/** A failed debootstrap can leave /proc and /sys mounted inside; never recurse into those. */
async function removeRootfs(dir: string, log: Logger): Promise<void> {
  try {
    const mounts = (await fs.readFile('/proc/mounts', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[1])
      .filter((m): m is string => !!m && m.startsWith(dir + '/'))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await runLogged('umount', ['-l', m], log).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  } catch (err) {
    log.warn(`could not remove ${dir}:`, err instanceof Error ? err.message : String(err));
  }
}

const STALE_LOCK_MS = 20 * 60_000;

/** A cross-process lock: the holder's pid in a file created with O_EXCL; a dead holder's lock is taken over. */
async function withFileLock<T>(lockPath: string, onWait: () => void, fn: () => Promise<T>): Promise<T> {
  for (let waited = false; ; ) {
    try {
      const fh = await fs.open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw platformError(`cannot create lock ${lockPath}`, err);
    }
    if (await lockIsStale(lockPath)) {
      await fs.rm(lockPath, { force: true });
      continue;
    }
    if (!waited) onWait();
    waited = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockPath, { force: true });
  }
}

async function lockIsStale(lockPath: string): Promise<boolean> {
  try {
    const [content, st] = await Promise.all([fs.readFile(lockPath, 'utf8'), fs.stat(lockPath)]);
    if (Date.now() - st.mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number(content.trim());
    if (!Number.isInteger(pid) || pid <= 0) return Date.now() - st.mtimeMs > 5000; // being written, or garbage
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return errnoCode(err) === 'ESRCH';
    }
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? false : true;
  }
}

function platformError(what: string, err: unknown): MirrordError {
  const msg = err instanceof Error ? err.message : String(err);
  return new MirrordError(`${what}: ${msg}`, ExitCode.Platform, undefined, { cause: err });
}
