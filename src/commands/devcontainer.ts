import type { Logger } from '../../common/log.js';
import { devcontainerLogs, devcontainerStatus, startDevcontainer, stopDevcontainer, type SelfCommand } from '../devcontainer/control.js';
import { runDaemon } from '../devcontainer/daemon.js';
import type { DevcontainerFlags } from '../devcontainer/options.js';

export type { DevcontainerFlags };

const out = (s: string) => void process.stdout.write(s + '\n');
const err = (s: string) => void process.stderr.write(s + '\n');

/** Whether this process is the single executable (scripts/build-sea.mjs): then it is its own command. */
async function isSea(): Promise<boolean> {
  try {
    const sea = (await import('node:sea')) as { isSea(): boolean };
    return sea.isSea();
  } catch {
    return false;
  }
}

async function self(): Promise<SelfCommand> {
  if (await isSea()) return { file: process.execPath, args: [] };
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
      return runDaemon(flags, log, (await isSea()) ? process.execPath : '');
  }
}
