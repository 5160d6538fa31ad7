import { flagOverrides, type ExecFlags } from '../config/flags.js';
import { loadConfig } from '../config/load.js';
import { DEFAULT_MOUNTS_MAX_SIZE, resolveFeatures } from '../config/schema.js';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { bindDestinations, parseDockerRun } from '../local/container/docker-run.js';
import { runContainer } from '../local/container/run.js';
import { imageConfig } from '../local/container/user-container.js';
import { targetHostname } from '../local/container/hostname.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { createProgress, type Progress } from '../progress.js';
import { sessionSettings } from '../session/from-config.js';
import { inSidecar, type InSidecar } from '../session/sidecar.js';
import { startSession, type Session } from '../session/session.js';
import { targetFrom } from '../target.js';
import { parseSidecarArgs, type SidecarExtra } from '../config/sidecar-args.js';

/**
 * `mirrord container [flags] -- docker run ...`: the user's container runs in the context of the
 * target, joined to a sidecar that runs the intproxy (docs/container.md).
 */
export async function containerCommand(argv: string[], flags: ExecFlags, log: Logger, progress: Progress = createProgress()): Promise<number> {
  const run = parseDockerRun(argv);
  const { config } = await loadConfig({ file: flags.configFile, overrides: flagOverrides(flags) });
  const target = targetFrom(config, flags.namespace);
  const mounts = config.container?.mounts ?? { sync: true, max_size: DEFAULT_MOUNTS_MAX_SIZE };
  // Targetless has no target file system to copy from; the user's own mounts win over the target's,
  // and the sidecar's volume is ours.
  const sync = mounts.sync && target.kind !== 'targetless';
  const started = Date.now();
  // The user's container and the sidecar always run on the Docker engine; the agent runs next to the
  // target, on that engine or in a Kubernetes cluster. A missing image is said before anything starts.
  const docker = createDocker();
  await checkEngine(docker);
  run.platform ??= config.container?.platform;
  const image = await imageConfig(docker, run.image);
  const extra = sidecarExtra(config.container?.cli_extra_args, run.network);
  let session: Session<InSidecar> | undefined;
  try {
    session = await startSession({
      target,
      ...sessionSettings(config),
      intproxy: inSidecar({
        docker,
        network: run.network,
        publish: run.publish,
        capture: config.container?.capture ?? 'off',
        mounts: sync ? { maxBytes: mounts.max_size, exclude: [...bindDestinations(run.binds), '/mirrord'] } : undefined,
        cwd: run.workdir ?? (image.WorkingDir || '/'),
        hostname: resolveFeatures(config).hostname ? (t) => targetHostname(docker, t, log) : undefined,
        extra,
      }),
      log,
      progress,
    });
    log.debug(`sidecar ready after ${Date.now() - started} ms`);
    return await runContainer(session, run, image, { syncMounts: sync, maxBytes: mounts.max_size, log, progress });
  } catch (err) {
    progress.fail();
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404 && !(err instanceof MirrordError)) {
      throw new MirrordError(`image ${run.image} is not on the Docker engine`, ExitCode.Program, `Build or pull it first (docker pull ${run.image})`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    log.debug(`user container done after ${Date.now() - started} ms; ending the session`);
    await session?.close();
    log.debug(`session ended after ${Date.now() - started} ms`);
  }
}

/** container.cli_extra_args (validated with the config); a --network there and another in the docker run cannot both hold. */
function sidecarExtra(args: string[] | undefined, network: string | undefined): SidecarExtra | undefined {
  if (!args?.length) return undefined;
  const extra = parseSidecarArgs(args);
  if (extra.network && network && extra.network !== network) {
    throw new MirrordError(
      `container.cli_extra_args: --network ${extra.network} and the docker run's --network ${network} disagree`,
      ExitCode.Config,
      'The sidecar owns the one network namespace of both: name the network once',
    );
  }
  return extra;
}
