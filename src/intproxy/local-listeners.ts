import { readFile } from 'node:fs/promises';

/**
 * Whether a program listens on a TCP port of this network namespace's loopback (or on every
 * address): the intproxy shares the program's namespace (the same host for exec, the sidecar's
 * namespace for a container), so the kernel's own socket tables answer. A connection to such a port
 * is the program's own service (a health check, a second process of the same app) and stays local,
 * as mirrord keeps a program's connections to its own listening ports local.
 */
const LISTEN = '0A';

export async function listensOnLoopback(port: number, tables = ['/proc/net/tcp', '/proc/net/tcp6']): Promise<boolean> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of tables) {
    let text: string;
    try {
      text = await readFile(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== LISTEN) continue;
      const [addr, p] = cols[1]!.split(':');
      if (p === hexPort && reachesLoopback(addr!)) return true;
    }
  }
  return false;
}

/** Any address (0.0.0.0, ::), or a loopback one (127.x as the kernel writes it, little-endian; ::1; ::ffff:127.x). */
function reachesLoopback(hex: string): boolean {
  if (/^0+$/.test(hex)) return true;
  if (hex.length === 8) return hex.endsWith('7F');
  if (hex === '00000000000000000000000001000000') return true;
  // ::ffff:127.x.y.z: the last 32-bit word holds the IPv4 address.
  return hex.startsWith('0000000000000000FFFF0000') && hex.endsWith('7F');
}
