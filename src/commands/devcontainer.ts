import type { Logger } from '../../common/log.js';
import { devcontainerLogs, devcontainerStatus, startDevcontainer, stopDevcontainer, type SelfCommand } from '../devcontainer/control.js';
import { runDaemon } from '../devcontainer/daemon.js';
import type { DevcontainerFlags } from '../devcontainer/options.js';

export type { DevcontainerFlags };

const out = (s: string) => void process.stdout.write(s + '\n');
const err = (s: string) => void process.stderr.write(s + '\n');

/**
 * Whether this process is the single executable: its bundle's banner says so (scripts/build-sea.mjs;
 * the SEA's main script cannot import('node:sea')). Then it is its own command.
 */
function isSea(): boolean {
  return (globalThis as { __mirrordSingleExecutable?: boolean }).__mirrordSingleExecutable === true;
}

async function self(): Promise<SelfCommand> {
  if (isSea()) return { file: process.execPath, args: [] };
  return { file: process.execPath, args: [...process.execArgv, process.argv[1]!] };
}

/** `mirrord devcontainer start|status|stop|logs` (and the daemon `start` runs): docs/devcontainer.md. */
export async function devcontainerCommand(action: 'start' | 'status' | 'stop' | 'logs' | 'daemon', flags: DevcontainerFlags, log: Logger): Promise<number> {
  switch (action) {
    case 'start':
      return startDevcontainer(flags, await self(), out, err);
    case 'status':
      return devcontainerStatus(out);
    case 'stop':
      return stopDevcontainer(out);
    case 'logs':
      return devcontainerLogs(out);
    case 'daemon':
      return runDaemon(flags, log, isSea() ? process.execPath : '');
  }
}
