/**
 * What the devcontainer tests share: the real `devcontainer` CLI (@devcontainers/cli, pinned), the
 * built feature, and a local Codespaces-like image.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { docker, listContainers } from './docker-fixtures.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEVCONTAINER = path.join(REPO, 'node_modules/.bin/devcontainer');
export const FEATURE_DIR = path.join(REPO, 'dist/devcontainer-feature/src/mirrord');
export const SOCKET = '/var/run/docker.sock';
export const run = promisify(execFile);

/** The single executable and the feature around it, built when stale. */
export function buildFeature(): void {
  execFileSync(process.execPath, ['scripts/build-sea.mjs', '--if-stale'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync(process.execPath, ['scripts/build-feature.mjs'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * `base` with the user Codespaces have: `codespace` (uid 1000, passwordless sudo), in the group of
 * this host's Docker socket (Docker-outside-of-Docker). Built once per base and socket group.
 */
export async function codespaceImage(base: string): Promise<string> {
  const gid = statSync(SOCKET).gid;
  const dockerfile =
    `FROM ${base}\n` +
    `RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo >/dev/null && rm -rf /var/lib/apt/lists/* \\\n` +
    ` && useradd -m -u 1000 -s /bin/bash codespace && echo 'codespace ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/codespace \\\n` +
    ` && (getent group ${gid} >/dev/null || groupadd -g ${gid} docker-host) && usermod -aG $(getent group ${gid} | cut -d: -f1) codespace\n`;
  return cachedImage('mirrord-test-devc-codespace', dockerfile);
}

/** An image built from `dockerfile` (no context), tagged NAME:hash of the file so that it is built once. */
export async function cachedImage(name: string, dockerfile: string): Promise<string> {
  const tag = `${name}:${createHash('sha256').update(dockerfile).digest('hex').slice(0, 12)}`;
  const exists = await docker()
    .getImage(tag)
    .inspect()
    .then(
      () => true,
      () => false,
    );
  if (!exists) execFileSync('docker', ['build', '-q', '-t', tag, '-'], { input: dockerfile, stdio: ['pipe', 'ignore', 'inherit'], timeout: 300_000 });
  return tag;
}

/** Removes the dev containers carrying `label` (and, when given, whose value ends with `suffix`) and the vsc- images devcontainer built. */
export async function removeDevContainers(label: string, images: string[], suffix?: string): Promise<void> {
  const d = docker();
  for (const c of await listContainers(label))
    if (suffix === undefined || c.Labels[label.split('=')[0]!]?.endsWith(suffix))
      await d
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
  for (const image of images)
    if (image.startsWith('vsc-'))
      await d
        .getImage(image)
        .remove({ force: true })
        .catch(() => undefined);
}
