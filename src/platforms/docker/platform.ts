import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';
import { ownerGone } from '../owner.js';
import type { Logger } from '../../../common/log.js';
import type { TargetSpec } from '../../target.js';
import type { AgentHandle, AgentStartOptions, ResolvedTarget, TargetPlatform } from '../platform.js';
import { startDockerAgent } from './agent.js';
import { startSharedAgent } from './shared-agent.js';
import { LABEL_AGENT, LABEL_OWNER } from './labels.js';
import { removeContainer } from './remove.js';
import { agentImageRecipe, agentImageTag } from '../../images/recipes.js';
import { checkEngine, createDocker } from './client.js';
import { ensureImage } from '../../images/build.js';
import { findContainer } from './target.js';

/** `docker/NAME_OR_ID` targets on the local engine or DOCKER_HOST. */
export class DockerPlatform implements TargetPlatform {
  readonly name = 'docker';
  private checked: Promise<void> | undefined;

  private agentTag?: string;

  /** `sharedAgent`: the session will look for a shared agent of the built-in image (agent.shared, no agent.image). */
  constructor(
    readonly docker: Docker = createDocker(),
    private readonly opts: { sharedAgent?: boolean } = {},
  ) {}

  /** The built-in agent image's tag, once (its files' stat, or their hash when those changed: src/images/tag-cache.ts). */
  private builtinTag(): string {
    return (this.agentTag ??= agentImageTag());
  }

  private async engine(): Promise<Docker> {
    // Once, however many calls wait on it at once (the reaper and the target's look-up run together).
    this.checked ??= checkEngine(this.docker).catch((err: unknown) => {
      this.checked = undefined;
      throw err;
    });
    await this.checked;
    return this.docker;
  }

  async resolveTarget(spec: TargetSpec): Promise<ResolvedTarget> {
    if (spec.kind !== 'docker') {
      throw new MirrordError(`the Docker platform cannot run target kind ${spec.kind}`, ExitCode.Usage);
    }
    const found = findContainer(await this.engine(), spec.container);
    // A warm join needs the agent image's tag (the shared agent is found by it): hashed while the engine answers.
    if (this.opts.sharedAgent) this.builtinTag();
    const c = await found;
    return { spec, id: c.id, display: `docker/${c.name} (${c.id.slice(0, 12)})` };
  }

  async startAgent(target: ResolvedTarget, opts: AgentStartOptions): Promise<AgentHandle> {
    const docker = await this.engine();
    const name = target.spec.kind === 'docker' ? target.spec.container : target.id;
    if (opts.shared) {
      // A live shared agent of this image runs it already: a warm join asks the engine about the
      // image only when it has to start a container from it (the agent, its guard, the healer).
      // The recipe (the files' contents) is read only when the image has to be there.
      const image = opts.image ?? this.builtinTag();
      let ensured: Promise<string> | undefined;
      const ensure = () =>
        (ensured ??= opts.image ? Promise.resolve(image) : ensureImage(docker, agentImageRecipe(), { progress: opts.progress, log: opts.log }));
      opts.progress.update(`joining the shared agent next to ${target.display}`);
      return startSharedAgent(docker, { id: target.id, name }, image, opts, ensure);
    }
    const image = opts.image ?? (await ensureImage(docker, agentImageRecipe(), { progress: opts.progress, log: opts.log }));
    opts.progress.update(`starting agent next to ${target.display}`);
    return startDockerAgent(docker, { id: target.id, name }, image, opts);
  }

  /**
   * Agents whose CLI died are normally gone already (stdin closed -> exit -> AutoRemove); this
   * catches the rest, e.g. after an engine restart, for owners on this host that no longer run.
   */
  async reap(log: Logger): Promise<void> {
    let list: Docker.ContainerInfo[];
    try {
      list = await (await this.engine()).listContainers({ all: true, filters: { label: [LABEL_AGENT] } });
    } catch (err) {
      log.debug(`reaper: ${(err as Error).message}`);
      return;
    }
    for (const c of list) {
      if (!ownerGone(c.Labels[LABEL_OWNER])) continue;
      // A container-mode user container that ran is the user's (kept without --rm, as docker run
      // keeps it); one that never started was left half-made by a killed CLI.
      if (c.Labels[LABEL_AGENT] === 'user' && c.State !== 'created') continue;
      log.debug(`reaper: removing agent ${c.Id.slice(0, 12)} of dead session owner ${c.Labels[LABEL_OWNER]}`);
      await removeContainer(this.docker.getContainer(c.Id), log);
    }
  }
}
