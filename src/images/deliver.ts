/**
 * The agent image on its way to a cluster: loaded into a local cluster (or through the load hook)
 * when the nodes say they cannot pull it, pushed to a registry by `mirrord image push`, and the
 * exact command for the user when neither can happen by itself.
 */
import { spawn } from 'node:child_process';
import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { quietProgress, type Progress } from '../progress.js';
import { ensureImage, imageExists, recipeTag } from './build.js';
import { agentImageRecipe } from './recipes.js';
import { LOAD_HOOK_ENV, detectLocalCluster, loadCommand, loadHook, shellLine, type ContextShape } from './local-cluster.js';

export interface LoadPlan {
  /** For the progress line and messages. */
  display: string;
  argv: string[];
}

/** How `images` would get into the cluster of this context: the hook, else the local cluster's own loader. */
export function loadPlan(ctx: ContextShape | undefined, images: string[], env: NodeJS.ProcessEnv = process.env): LoadPlan | undefined {
  const hook = loadHook(env);
  if (hook) return { display: `${hook} ${images.join(' ')}`, argv: ['sh', '-c', `${hook} "$@"`, 'mirrord-image-load', ...images] };
  const local = ctx && detectLocalCluster(ctx);
  const argv = local && loadCommand(local, images);
  return argv ? { display: shellLine(argv), argv } : undefined;
}

/** Runs the plan; its last output line is in the error when it fails. */
export function runLoad(plan: LoadPlan, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(plan.argv[0]!, plan.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: Buffer) => {
      out = (out + d.toString()).slice(-2000);
      log.debug(`load: ${d.toString().trimEnd()}`);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) =>
      reject(new MirrordError(`cannot run ${plan.display}: ${err.message}`, ExitCode.Agent, `Install ${plan.argv[0]}, or set ${LOAD_HOOK_ENV}`)),
    );
    child.on('close', (code) => {
      if (code === 0) return resolve();
      const last = out.trim().split('\n').pop() ?? '';
      reject(
        new MirrordError(
          `loading the agent image failed (${plan.display}: exit ${code}${last ? `: ${last}` : ''})`,
          ExitCode.Agent,
          'Run the command by hand to see why',
        ),
      );
    });
  });
}

/**
 * After the nodes reported they cannot pull `image`: loads it when this machine's engine has it and
 * a way to load exists. True when loaded (the kubelet's next pull attempt finds it), false when
 * there is no way (the caller reports the pull failure with pullHint).
 */
export async function loadAfterPullFailure(
  docker: Docker,
  image: string,
  ctx: ContextShape | undefined,
  o: { progress: Progress; log: Logger; env?: NodeJS.ProcessEnv },
): Promise<boolean> {
  const plan = loadPlan(ctx, [image], o.env);
  if (!plan) return false;
  // This CLI's own agent image is built here when missing (Kubernetes sessions never needed it locally before).
  const own = agentImageRecipe();
  if (image === recipeTag(own)) await ensureImage(docker, own, { progress: o.progress, log: o.log });
  else if (!(await imageExists(docker, image).catch(() => false))) return false;
  const line = `the cluster cannot pull ${image}: loading it (${plan.display})`;
  // A change to the user's cluster is said even where no spinner shows (a pipe, CI).
  if (o.progress === quietProgress) process.stderr.write(`mirrord: ${line}\n`);
  else o.progress.update(line);
  const started = Date.now();
  await runLoad(plan, o.log);
  o.log.debug(`loaded ${image} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return true;
}

/** The hint of the "cannot pull the agent image" error: the exact command that fixes it. */
export function pullHint(image: string, ctx: ContextShape | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const plan = loadPlan(ctx, [image], env);
  if (plan) return `Load it with \`mirrord image load\` (runs ${plan.display}), or push it: \`mirrord image push REGISTRY/mirrord-agent\` and set agent.image`;
  const [, tag = 'latest'] = /:([^:/]+)$/.exec(image) ?? [];
  return `Push it to a registry the nodes can pull from: \`mirrord image push REGISTRY/mirrord-agent\`, then set agent.image to REGISTRY/mirrord-agent:${tag} (or set ${LOAD_HOOK_ENV} to a command that loads images into this cluster)`;
}

/** `REGISTRY/NAME[:TAG]` for `image`: the tag defaults to the local image's own. */
export function pushReference(image: string, target: string): { repo: string; tag: string } {
  const localTag = /:([^:/]+)$/.exec(image)?.[1] ?? 'latest';
  const m = /^(.+?)(?::([^:/]+))?$/.exec(target)!;
  if (!m[1]!.includes('/')) {
    throw new MirrordError(`"${target}" names no registry`, ExitCode.Usage, 'Use REGISTRY/NAME, e.g. registry.example.com:5000/mirrord-agent');
  }
  return { repo: m[1]!, tag: m[2] ?? localTag };
}

/** Tags `image` as REPO:TAG and pushes it through the engine (its credentials: docker login). */
export async function pushImage(docker: Docker, image: string, target: string, progress: Progress, log: Logger): Promise<string> {
  const { repo, tag } = pushReference(image, target);
  const ref = `${repo}:${tag}`;
  await docker.getImage(image).tag({ repo, tag });
  progress.update(`pushing ${ref}`);
  const stream = await docker.getImage(ref).push({ tag });
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(
      stream,
      (err) => (err ? reject(err) : resolve()),
      (ev: { status?: string; error?: string; id?: string }) => {
        if (ev.error) failure = ev.error;
        else if (ev.status) log.debug(`push ${ref}: ${ev.id ? `${ev.id} ` : ''}${ev.status}`);
      },
    ),
  ).catch((err: unknown) => (failure ??= (err as Error).message));
  if (failure) {
    throw new MirrordError(`pushing ${ref} failed: ${failure.trim()}`, ExitCode.Platform, 'Log in to the registry with docker login, and check its name');
  }
  return ref;
}
