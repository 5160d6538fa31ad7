import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { isAlive, ownerPidHere } from '../platforms/owner.js';
import { createDocker, checkEngine } from '../platforms/docker/client.js';
import { LABEL_AGENT, LABEL_OWNER } from '../platforms/docker/labels.js';
import { removeContainer } from '../platforms/docker/remove.js';
import { createProgress, type Progress } from '../progress.js';
import { checkCompose } from '../compose/version.js';
import { composeConfig, composeStep } from '../compose/docker-compose.js';
import type { ComposeDoc } from '../compose/rewrite.js';
import { findUpInput, planCompose } from '../up/compose-file.js';
import { LABEL_UP_PROJECT, runComposeUp, WATCHDOG_COMMAND } from '../up/compose-run.js';
import { runWatchdog, type WatchdogSpec } from '../up/watchdog.js';
import { loadUpFile } from '../up/file.js';
import { parse as parseYaml } from 'yaml';
import { planServices, type UpMode } from '../up/plan.js';
import { LABEL_UP, runUp, upLabelValue } from '../up/run.js';

export interface UpFlags {
  file?: string[];
  profile?: string[];
  build?: boolean;
  projectName?: string;
  key?: string;
  mode?: UpMode;
  context?: string;
  color?: boolean;
  logPrefix?: boolean;
  abort?: boolean;
  timeout?: string;
}

/** The session key: -k, else the user name, as mirrord's up. */
export function sessionKey(flag?: string): string {
  if (flag) return flag;
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'mirrord';
  }
}

/** `mirrord up [SERVICE...]`: every service of mirrord-up.yaml, each in the context of its own target (docs/up.md). */
export async function upCommand(only: string[], flags: UpFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const key = sessionKey(flags.key);
  const input = findUpInput(flags.file ?? []);
  const timeoutS = flags.timeout === undefined ? 10 : Number(flags.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS < 0)
    throw new MirrordError(`--timeout ${flags.timeout} is not a number of seconds`, ExitCode.Usage, 'Use --timeout 10');
  const common = {
    key,
    colour: flags.color !== false && process.stdout.isTTY === true && !process.env.NO_COLOR,
    prefix: flags.logPrefix !== false,
    noAbort: flags.abort === false,
    timeoutS,
    // Under --wait (upDetached) the parent waits for this file.
    onRunning: () => {
      if (process.env.MIRRORD_UP_READY_FILE) writeFileSync(process.env.MIRRORD_UP_READY_FILE, `${process.pid}\n`);
    },
    log,
    progress,
  };
  if (input.kind === 'compose') {
    await checkCompose();
    const project = { files: input.files, projectDirectory: path.dirname(input.files[0]!), projectName: flags.projectName, profiles: flags.profile ?? [] };
    let plan;
    try {
      progress.update('reading the compose project');
      const doc = parseYaml(await composeConfig(project)) as ComposeDoc;
      plan = planCompose(doc, { key, mode: flags.mode, context: flags.context, only });
    } catch (err) {
      progress.fail();
      throw err;
    }
    return runComposeUp(project, plan, {
      ...common,
      tty: process.stderr.isTTY === true,
      build: flags.build === true,
      timeoutGiven: flags.timeout !== undefined,
    });
  }
  if (flags.profile?.length || flags.projectName || flags.build)
    throw new MirrordError('--profile, --project-name and --build are for compose files', ExitCode.Usage, `${input.file} is an up file`);
  const services = planServices(loadUpFile(input.file, key), { key, mode: flags.mode, context: flags.context, only });
  return runUp(services, common);
}

/**
 * `mirrord up down [-k KEY]`: what an earlier `up` with that key left on this Docker engine. An up
 * still running on this host is asked to stop (SIGTERM to its CLI) first; then every agent, guard,
 * sidecar and container carrying its label is removed.
 */
export async function upDownCommand(flags: { key?: string; timeout?: string }, log: Logger, out: (s: string) => void): Promise<number> {
  const value = upLabelValue(sessionKey(flags.key));
  const docker = createDocker();
  await checkEngine(docker);
  const list = async () => docker.listContainers({ all: true, filters: { label: [`${LABEL_UP}=${value}`] } });
  const found = await list();
  const pids = new Set<number>();
  for (const c of found) {
    const pid = ownerPidHere(c.Labels[LABEL_OWNER]);
    if (pid !== undefined && isAlive(pid)) pids.add(pid);
  }
  for (const pid of pids) {
    log.debug(`up down: asking mirrord up (pid ${pid}) to stop`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + (Number(flags.timeout ?? 10) + 5) * 1000;
  while (pids.size > 0 && Date.now() < deadline && [...pids].some((p) => isAlive(p))) await new Promise((r) => setTimeout(r, 200));
  const left = await list();
  // Sidecars last: the services joined to one use its volume, which goes with it.
  const sidecar = (c: (typeof left)[number]) => c.Labels[LABEL_AGENT] === 'sidecar';
  await Promise.all(left.filter((c) => !sidecar(c)).map((c) => removeContainer(docker.getContainer(c.Id), log)));
  await Promise.all(left.filter(sidecar).map((c) => removeContainer(docker.getContainer(c.Id), log)));
  // Compose projects: their networks (their named volumes are the user's, and stay).
  for (const project of new Set(found.map((c) => c.Labels[LABEL_UP_PROJECT]).filter((x): x is string => !!x))) {
    await composeStep(['compose', '-p', project, 'down', '-t', '0'], log, { tty: false }).catch((err: Error) => log.warn(err.message));
  }
  out(`mirrord up down: ${found.length} container${found.length === 1 ? '' : 's'} of key ${value} (${pids.size} running up stopped, ${left.length} removed)`);
  return 0;
}

/**
 * `mirrord up --wait`: the same up in a background process of its own (its output in a log file),
 * returning once every service runs; `mirrord up down` stops it.
 */
export async function upDetached(argv: string[], flags: UpFlags, log: Logger): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-up-'));
  const ready = path.join(dir, 'ready');
  const logFile = path.join(dir, 'up.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [process.argv[1]!, ...argv.filter((a) => a !== '--wait')], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, MIRRORD_UP_READY_FILE: ready },
  });
  closeSync(fd);
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1))),
  );
  while (!existsSync(ready)) {
    const code = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
    if (code !== undefined) {
      process.stderr.write(readFileSync(logFile, 'utf8'));
      return code === 0 ? 1 : code;
    }
  }
  child.unref();
  log.debug(`up --wait: background up is pid ${child.pid}`);
  process.stderr.write(
    `mirrord up: every service is running (pid ${child.pid}, log ${logFile}); stop them with: mirrord up down${flags.key ? ` -k ${flags.key}` : ''}\n`,
  );
  return 0;
}

export const UP_WATCHDOG = WATCHDOG_COMMAND;

/** The hidden command of the compose watchdog: ends the project if its `mirrord up` is killed. */
export function upWatchdog(spec: string): Promise<void> {
  return runWatchdog(JSON.parse(spec) as WatchdogSpec);
}
