import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { formatBytes } from '../../common/bytes.js';
import { packSync, planSync, SyncTooLarge, type FsAgent } from '../fs/mounts.js';

/**
 * The target's mounted files (Docker volumes and bind mounts, a pod's ConfigMaps, Secrets and
 * service-account token) copied into the dev container at their paths when the session starts, as
 * container mode does: the same walk and archive (src/fs/mounts.ts), extracted here by `tar` as
 * root. The daemon runs as the remote user, and paths such as /var/run/secrets are root's: a
 * non-root daemon runs `sudo -n tar`, as it writes /etc/ld.so.preload.
 */
export interface CopiedMounts {
  roots: string[];
  entries: number;
  bytes: number;
}

/**
 * The dev container's own mount points (the workspace, the Docker socket, /etc/hosts...): what the
 * tooling put there wins, so nothing of the target's is written at or under them.
 */
export function ownMountPoints(mountinfo: string): string[] {
  const points = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    // Field 5 is the mount point, with spaces and the like octal-escaped.
    const p = line.split(' ')[4];
    if (!p || p === '/') continue;
    points.add(p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return [...points].sort();
}

function readMountinfo(): string {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return '';
  }
}

/** The command that extracts an archive from stdin at /, keeping the target's modes and numeric owners. */
export function extractCommand(uid: number | undefined): [string, string[]] {
  const tar = ['tar', '-x', '-p', '--numeric-owner', '-f', '-', '-C', '/'];
  return uid === 0 ? [tar[0]!, tar.slice(1)] : ['sudo', ['-n', ...tar]];
}

/** Copies the target's mounted files; throws with a one-line reason when they stay the target's only. */
export async function copyMounts(agent: FsAgent, opts: { maxBytes: number; exclude?: string[] }): Promise<CopiedMounts> {
  const exclude = [...ownMountPoints(readMountinfo()), ...(opts.exclude ?? [])];
  let plan;
  try {
    plan = await planSync(agent, { maxBytes: opts.maxBytes, exclude });
  } catch (err) {
    if (err instanceof SyncTooLarge)
      throw new Error(`they are larger than container.mounts.max_size (${formatBytes(opts.maxBytes)}): ${err.message}`, { cause: err });
    throw err;
  }
  const copied = { roots: plan.roots, entries: plan.entries.length, bytes: plan.bytes };
  if (!plan.entries.length) return copied;
  const [file, args] = extractCommand(process.getuid?.());
  // The extractor runs without the layer: the daemon's mark keeps it inert in the daemon's children.
  const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  try {
    await spawned;
  } catch (err) {
    throw new Error(`cannot run ${file}: ${(err as Error).message}`, { cause: err });
  }
  // An extractor that dies early (sudo refused) closes its stdin: the archive's writes fail then.
  const packed = packSync(agent, plan, child.stdin).catch((err: Error) => err);
  child.stdin.on('error', () => undefined);
  const [code] = await exited;
  if (code !== 0) {
    // Not waiting for the archive: with its reader gone it may never drain.
    const why = stderr.trim().split('\n').pop() || `exit ${code}`;
    throw new Error(file === 'sudo' ? `not root, and sudo -n tar: ${why}` : `tar: ${why}`);
  }
  const packErr = await packed;
  if (packErr instanceof Error) throw packErr;
  return copied;
}
