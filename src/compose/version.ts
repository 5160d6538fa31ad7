import { execFile } from 'node:child_process';
import { ExitCode, MirrordError } from '../../common/errors.js';

/**
 * `mirrord up` drives the user's `docker compose` (Docker Compose v2, the Docker CLI plugin). This
 * finds which one is installed and refuses, with one line, one that is missing or too old.
 * scripts/ensure-compose.sh installs one on the test machines (test/compose/versions.env says the same minimum).
 */
export const MIN_COMPOSE = '2.20.0';

export interface ComposeVersion {
  major: number;
  minor: number;
  patch: number;
  /** As written, without a leading `v`: `2.29.1`, `2.29.1-desktop.1`, `1.29.2`. */
  text: string;
}

/** Runs a program and resolves with its output; rejects when it cannot start or exits non-zero. */
export type Runner = (file: string, args: readonly string[]) => Promise<{ stdout: string; stderr: string }>;

const RUN_TIMEOUT_MS = 20_000;

export const execRunner: Runner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: RUN_TIMEOUT_MS, encoding: 'utf8', env: { ...process.env, DOCKER_CLI_HINTS: 'false' } }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });

// A version word: 2.29.1, v2.29.1, 2.29, 2.29.1-desktop.1, 2.29.1+build (not part of a longer token).
const VERSION = /(?:^|[\s,(])v?(\d+)\.(\d+)(?:\.(\d+))?((?:[-+][0-9A-Za-z.-]+)*)(?=$|[\s,)])/;

/**
 * The version in what `docker compose version [--short]` (or `docker-compose version`) prints:
 * `Docker Compose version v2.29.1`, `2.29.1`, `v2.29.1-desktop.1`,
 * `docker-compose version 1.29.2, build unknown`. Undefined when there is none (e.g. a `dev` build).
 */
export function parseComposeVersion(text: string): ComposeVersion | undefined {
  for (const line of text.split(/\r?\n/)) {
    const m = VERSION.exec(line.trim());
    if (!m) continue;
    const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
    return { major, minor, patch, text: `${m[1]}.${m[2]}${m[3] === undefined ? '' : `.${m[3]}`}${m[4] ?? ''}` };
  }
  return undefined;
}

/** Negative, zero or positive as a is older than, the same release as, or newer than b (suffixes ignored). */
export function compareComposeVersions(a: ComposeVersion, b: ComposeVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

const MIN = parseComposeVersion(MIN_COMPOSE)!;
const NEEDS = `mirrord up needs Docker Compose >= ${MIN.major}.${MIN.minor}`;

/**
 * The installed `docker compose`, when it is >= MIN_COMPOSE. Asks `docker compose version --short`,
 * then, when that fails or says nothing usable, `docker compose version`. Throws a MirrordError
 * (ExitCode.Platform) naming the version found, or saying none is installed.
 */
export async function checkCompose(run: Runner = execRunner): Promise<ComposeVersion> {
  let answered: string | undefined;
  for (const args of [
    ['compose', 'version', '--short'],
    ['compose', 'version'],
  ]) {
    let stdout: string;
    try {
      ({ stdout } = await run('docker', args));
    } catch {
      continue;
    }
    answered ??= stdout.trim().split(/\r?\n/)[0];
    const v = parseComposeVersion(stdout);
    if (!v) continue;
    if (compareComposeVersions(v, MIN) < 0) throw new MirrordError(`docker compose ${v.text} found; ${NEEDS}`, ExitCode.Platform);
    return v;
  }
  if (answered) throw new MirrordError(`docker compose ${answered} found; ${NEEDS}`, ExitCode.Platform);
  throw new MirrordError(
    `docker compose is not installed; ${NEEDS} (the compose plugin of Docker, https://docs.docker.com/compose/install/)`,
    ExitCode.Platform,
  );
}
