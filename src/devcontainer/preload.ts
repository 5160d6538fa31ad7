import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { PreloadMode } from './state.js';

/**
 * How the layer reaches the dev container's processes, written at run time only (never in an image
 * build, so other features' install steps run without it):
 * - `all`: a line in /etc/ld.so.preload, which the loader reads for every dynamically linked program
 *   (`docker exec`, `env -i`, IDE processes), with no variable;
 * - `shell`: LD_PRELOAD in /etc/profile.d, so only login shells and what they start;
 * - `none`: nothing; `mirrord exec` still works.
 * The files are root's: a non-root user goes through `sudo -n` (Codespaces' `codespace` user has it).
 */
export const LD_SO_PRELOAD = '/etc/ld.so.preload';
export const PROFILE_SCRIPT = '/etc/profile.d/mirrord.sh';

function profileScript(layer: string): string {
  return `# Written by mirrord devcontainer start (preload: shell); removed by mirrord devcontainer stop.\nexport LD_PRELOAD="${layer}\${LD_PRELOAD:+:$LD_PRELOAD}"\n`;
}

/** Lines of ld.so.preload with `layer` added (once) or removed. */
export function editPreloadList(text: string, layer: string, add: boolean): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '' && l.trim() !== layer);
  if (add) lines.unshift(layer);
  return lines.length ? lines.join('\n') + '\n' : '';
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Writes `text` to a root-owned file, as root or through sudo -n; empty text removes it. */
function writeRootFile(file: string, text: string): void {
  try {
    if (text) writeFileSync(file, text, { mode: 0o644 });
    else rmSync(file, { force: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
  const script = text ? 'cat > "$1.mirrord-tmp" && chmod 644 "$1.mirrord-tmp" && mv "$1.mirrord-tmp" "$1"' : 'rm -f "$1"';
  const r = spawnSync('sudo', ['-n', 'sh', '-c', script, 'sh', file], { input: text, stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot write ${file} (not root, and sudo -n: ${r.error?.message ?? r.stderr.trim()})`);
}

export function enablePreload(mode: PreloadMode, layer: string): void {
  if (mode === 'all') writeRootFile(LD_SO_PRELOAD, editPreloadList(readOr(LD_SO_PRELOAD), layer, true));
  else if (mode === 'shell') writeRootFile(PROFILE_SCRIPT, profileScript(layer));
}

/** Takes the layer out of both places, whatever the mode was (stop, and the feature's entrypoint). */
export function disablePreload(layer: string): void {
  const text = readOr(LD_SO_PRELOAD);
  if (text.split('\n').some((l) => l.trim() === layer)) writeRootFile(LD_SO_PRELOAD, editPreloadList(text, layer, false));
  if (readOr(PROFILE_SCRIPT)) writeRootFile(PROFILE_SCRIPT, '');
}
