import { readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import type { Logger } from '../../../common/log.js';
import { LAYER_IN_SIDECAR } from '../../../common/sidecar-contract.js';
import { mergeEnv } from '../../env/merge.js';
import { sessionLabels } from '../../platforms/docker/labels.js';
import type { Progress } from '../../progress.js';
import type { Supervised } from '../process.js';
import type { InSidecar } from '../../session/sidecar.js';
import type { Session } from '../../session/session.js';
import type { DockerRun } from './docker-run.js';
import { createOptions } from './docker-run.js';
import { syncMounts } from './mounts-sync.js';
import { runUserContainer, underInit, type ImageConfig } from './user-container.js';

/**
 * The local side of `mirrord container`: the user's `docker run`, rewritten to join the session's
 * sidecar (its network namespace and its /mirrord volume), given the target's env and mounted
 * files, and run under mirrord-init so it ends when the sidecar goes. Resolves to its exit status.
 */
export async function runContainer(
  session: Session<InSidecar>,
  run: DockerRun,
  image: ImageConfig,
  opts: { syncMounts: boolean; maxBytes: number; log: Logger; progress: Progress; supervised?: Supervised; labels?: Record<string, string> },
): Promise<number> {
  const { docker, container: sidecar, ready } = session.host;
  const { env } = mergeEnv({}, await session.host.remoteEnv(), session.features.env);
  for (const file of run.envFiles) run.env.push(...Object.entries(parseDotenv(readFileSync(file, 'utf8'))).map(([k, v]) => `${k}=${v}`));
  Object.assign(env, await session.layerEnv(), { LD_PRELOAD: LAYER_IN_SIDECAR });
  const options = underInit(
    run,
    image,
    { ...createOptions(run, sidecar.id, env), Labels: { ...sessionLabels('user', session.id, session.target.id), ...opts.labels } },
    ready.lifelinePort,
  );
  // The fast path: the user's container reaches the agent's socket helper over the session's volume.
  if (session.fdPassBind) options.HostConfig = { ...options.HostConfig, Binds: [...(options.HostConfig?.Binds ?? []), session.fdPassBind] };
  session.onLinkLost((reason) => {
    process.stderr.write(`mirrord: lost the link to the agent (${reason}); remote connections and look-ups of the container now fail\n`);
  });
  const restore: Array<() => void> = [];
  try {
    return await runUserContainer(
      docker,
      run,
      options,
      restore,
      async (user) => {
        if (opts.syncMounts && ready.mountRoots?.length !== 0)
          await syncMounts(docker, sidecar, user, { maxBytes: opts.maxBytes, progress: opts.progress, log: opts.log.child('mounts') });
        opts.progress.succeed(`mirrord: running ${run.image} in the context of ${session.targetDisplay}`);
      },
      opts.log,
      opts.supervised,
    );
  } finally {
    for (const r of restore) r();
  }
}
