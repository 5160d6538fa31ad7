import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { loadConfig } from '../config/load.js';
import { ensureImage } from '../images/build.js';
import { loadPlan, pushImage, runLoad } from '../images/deliver.js';
import { contextShapeOf, LOAD_HOOK_ENV } from '../images/local-cluster.js';
import { agentImageRecipe } from '../images/recipes.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { createProgress } from '../progress.js';

export interface ImageFlags {
  configFile?: string;
  context?: string;
}

/**
 * `mirrord image build | push REGISTRY/NAME | load`: the agent image of this CLI, built on the local
 * engine, pushed to a registry the cluster's nodes pull from, or loaded into a local cluster (kind,
 * k3d, minikube; Docker Desktop shares the engine's images) or through MIRRORD_IMAGE_LOAD.
 */
export async function imageCommand(
  action: 'build' | 'push' | 'load',
  arg: string | undefined,
  flags: ImageFlags,
  log: Logger,
  out: (s: string) => void,
): Promise<number> {
  const docker = createDocker();
  await checkEngine(docker);
  const progress = createProgress();
  const image = await ensureImage(docker, agentImageRecipe(), { progress, log });
  if (action === 'build') {
    progress.succeed(`agent image ${image}`);
    out(image);
    return 0;
  }
  if (action === 'push') {
    if (!arg)
      throw new MirrordError(
        'mirrord image push needs REGISTRY/NAME',
        ExitCode.Usage,
        'For example: mirrord image push registry.example.com:5000/mirrord-agent',
      );
    const ref = await pushImage(docker, image, arg, progress, log);
    progress.succeed(`pushed ${ref}; set "agent": {"image": "${ref}"} in the config`);
    out(ref);
    return 0;
  }
  const { config } = await loadConfig({ file: flags.configFile });
  const { connectKube } = await import('../platforms/kubernetes/client.js');
  const kube = connectKube({ kubeconfig: config.kubeconfig, context: flags.context ?? config.kube_context });
  const ctx = contextShapeOf(kube.kc);
  const plan = loadPlan(ctx, [image]);
  if (!plan) {
    throw new MirrordError(
      `the kube context ${ctx?.context ?? '(none)'} is not a local cluster this CLI knows how to load images into (kind, k3d, minikube, Docker Desktop)`,
      ExitCode.Usage,
      `Push the image instead (mirrord image push REGISTRY/mirrord-agent), or set ${LOAD_HOOK_ENV} to a command that loads images into it`,
    );
  }
  progress.update(`loading ${image} (${plan.display})`);
  await runLoad(plan, log);
  progress.succeed(`loaded ${image} into ${ctx?.context ?? 'the cluster'}`);
  out(image);
  return 0;
}
