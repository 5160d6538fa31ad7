import type Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../../common/errors.js';

/**
 * The user's `docker run ...` (or `podman run ...`) for container mode, read into what dockerode
 * needs: the user container is then created through the API, joined to the sidecar's network
 * namespace, instead of by the docker CLI. Flags that cannot combine with a shared namespace
 * (`--network host`, `--net container:...`, `--hostname`) are refused, and flags that belong to the
 * namespace (networks, published ports) are handed to the sidecar, which owns it.
 */
export interface DockerRun {
  engine: 'docker' | 'podman';
  image: string;
  cmd: string[];
  name?: string;
  interactive: boolean;
  tty: boolean;
  autoRemove: boolean;
  env: string[];
  envFiles: string[];
  binds: string[];
  workdir?: string;
  entrypoint?: string[];
  user?: string;
  /** For the sidecar: the network it joins and the ports it publishes. */
  network?: string;
  publish: string[];
  /** --platform, else config container.platform: the platform of the image the engine runs. */
  platform?: string;
}

type Handler = (run: DockerRun, value: string) => void;

const VALUE_FLAGS: Record<string, Handler> = {
  '-e': (r, v) => r.env.push(v),
  '--env': (r, v) => r.env.push(v),
  '--env-file': (r, v) => r.envFiles.push(v),
  '-v': (r, v) => r.binds.push(v),
  '--volume': (r, v) => r.binds.push(v),
  '-w': (r, v) => (r.workdir = v),
  '--workdir': (r, v) => (r.workdir = v),
  // Docker takes the entrypoint as one word; arguments go after the image.
  '--entrypoint': (r, v) => (r.entrypoint = v === '' ? [] : [v]),
  '--name': (r, v) => (r.name = v),
  '-u': (r, v) => (r.user = v),
  '--user': (r, v) => (r.user = v),
  '-p': (r, v) => r.publish.push(v),
  '--publish': (r, v) => r.publish.push(v),
  '--network': (r, v) => setNetwork(r, v),
  '--net': (r, v) => setNetwork(r, v),
  '--platform': (r, v) => (r.platform = v),
};

const BOOL_FLAGS: Record<string, (r: DockerRun) => void> = {
  '-i': (r) => (r.interactive = true),
  '--interactive': (r) => (r.interactive = true),
  '-t': (r) => (r.tty = true),
  '--tty': (r) => (r.tty = true),
  '--rm': (r) => (r.autoRemove = true),
};

const REFUSED: Record<string, string> = {
  '-d': 'mirrord container runs the container attached, for the length of the session',
  '--detach': 'mirrord container runs the container attached, for the length of the session',
  '-h': "the container shares the sidecar's network namespace, whose host name it cannot change",
  '--hostname': "the container shares the sidecar's network namespace, whose host name it cannot change",
  '--network-alias': 'aliases belong to the sidecar, which owns the network namespace',
};

function setNetwork(r: DockerRun, v: string): void {
  if (v === 'host' || v.startsWith('container:') || v === 'none') {
    throw new MirrordError(
      `docker run --network ${v} cannot be combined with mirrord container`,
      ExitCode.Usage,
      "The container joins the mirrord sidecar's network namespace; drop --network, or give a user-defined network for the sidecar",
    );
  }
  r.network = v;
}

/** Parses `docker run [OPTIONS] IMAGE [COMMAND] [ARG...]` (also `podman run`). */
export function parseDockerRun(argv: string[]): DockerRun {
  const [engine, verb, ...rest] = argv;
  if ((engine !== 'docker' && engine !== 'podman') || verb !== 'run') {
    throw new MirrordError(
      `expected "docker run ..." after --, got "${argv.slice(0, 2).join(' ')}"`,
      ExitCode.Usage,
      'Usage: mirrord container [OPTIONS] -- docker run [DOCKER RUN OPTIONS] IMAGE [COMMAND...]',
    );
  }
  const run: DockerRun = { engine, image: '', cmd: [], interactive: false, tty: false, autoRemove: false, env: [], envFiles: [], binds: [], publish: [] };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--') continue;
    if (!arg.startsWith('-') || arg === '-') {
      run.image = arg;
      run.cmd = rest.slice(i + 1);
      return run;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (REFUSED[flag]) throw new MirrordError(`docker run ${flag} is not supported with mirrord container`, ExitCode.Usage, REFUSED[flag]);
    if (BOOL_FLAGS[flag] && eq < 0) {
      BOOL_FLAGS[flag](run);
      continue;
    }
    if (VALUE_FLAGS[flag]) {
      const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
      if (value === undefined) throw new MirrordError(`docker run ${flag} needs a value`, ExitCode.Usage);
      VALUE_FLAGS[flag](run, value);
      continue;
    }
    // Short flags bundled (-it) or glued to their value (-eKEY=v, -v/a:/b).
    if (/^-[a-zA-Z]{2,}/.test(arg)) {
      const first = `-${arg[1]}`;
      if (VALUE_FLAGS[first]) {
        VALUE_FLAGS[first](run, arg.slice(2));
        continue;
      }
      const letters = arg
        .slice(1)
        .split('')
        .map((c) => `-${c}`);
      const unknown = letters.find((l) => !BOOL_FLAGS[l]);
      if (unknown) throw unsupported(unknown);
      letters.forEach((l) => BOOL_FLAGS[l]!(run));
      continue;
    }
    throw unsupported(flag);
  }
  throw new MirrordError('docker run needs an image', ExitCode.Usage, 'Usage: mirrord container -- docker run [OPTIONS] IMAGE [COMMAND...]');
}

function unsupported(flag: string): MirrordError {
  return new MirrordError(
    `docker run ${flag} is not supported by mirrord container yet`,
    ExitCode.Usage,
    'Supported: -i, -t, --rm, -e, --env-file, -v, -w, --entrypoint, --name, -u, -p, --network',
  );
}

/**
 * The user container's create options, joined to the sidecar (`--network container:`, the layer
 * from its volume) with the session's environment last so it wins over the image's.
 */
export function createOptions(run: DockerRun, sidecarId: string, env: Record<string, string>): Docker.ContainerCreateOptions {
  return {
    Image: run.image,
    name: run.name,
    // A query parameter of the create call (dockerode sends top-level keys as the query too).
    ...(run.platform ? { platform: run.platform } : {}),
    Cmd: run.cmd.length ? run.cmd : undefined,
    Entrypoint: run.entrypoint,
    WorkingDir: run.workdir,
    User: run.user,
    Tty: run.tty,
    OpenStdin: run.interactive,
    StdinOnce: run.interactive,
    AttachStdin: run.interactive,
    AttachStdout: true,
    AttachStderr: true,
    Env: [...run.env, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)],
    HostConfig: {
      NetworkMode: `container:${sidecarId}`,
      VolumesFrom: [sidecarId],
      Binds: run.binds.length ? run.binds : undefined,
      AutoRemove: run.autoRemove,
    },
  };
}

/** Where the user's `-v` mounts land in the container (`SRC:DST[:OPTS]`, or `DST` for an anonymous volume). */
export function bindDestinations(binds: string[]): string[] {
  return binds.map((b) => {
    const parts = b.split(':');
    return (parts.length === 1 ? parts[0]! : parts[1]!).replace(/\/+$/, '') || '/';
  });
}
