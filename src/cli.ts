import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
// Each command's module is imported by its action only: `mirrord exec` against a Docker target never
// loads the Kubernetes client, `mirrord --version` loads no command at all (bench/warm-start.ts).
import type { DevcontainerFlags } from './commands/devcontainer.js';
import type { ExecFlags } from './commands/exec.js';
import type { LsFlags } from './commands/ls.js';
import type { StatusFlags } from './commands/status.js';
import type { InitFlags } from './commands/init.js';
import type { UpFlags } from './commands/up.js';
import { COPY_WATCHDOG_COMMAND, UP_WATCHDOG_COMMAND } from './hidden-commands.js';
import { ExitCode, MirrordError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { packageRoot } from './package-root.js';

export function version(): string {
  return (JSON.parse(readFileSync(`${packageRoot()}/package.json`, 'utf8')) as { version: string }).version;
}

/** The flags `exec` and `container` share: they stand for config keys (src/config/flags.ts). */
function sessionOptions(cmd: Command): Command {
  return cmd
    .option('-n, --namespace <ns>', 'namespace of the target (Kubernetes)')
    .option('--context <name>', 'kubeconfig context (config key kube_context)')
    .option('--kubeconfig <file>', 'kubeconfig file (config key kubeconfig; default KUBECONFIG, then ~/.kube/config)')
    .option('-f, --config-file <file>', 'config file (default: MIRRORD_CONFIG_FILE, then a search for mirrord.json/yaml/toml)')
    .option('--steal', 'steal incoming traffic instead of mirroring it')
    .addOption(new Option('--fs-mode <mode>', 'file system mode').choices(['read', 'write', 'local', 'localwithoverrides']))
    .option('--no-outgoing', 'keep outgoing connections local')
    .option('--no-remote-dns', 'resolve host names locally')
    .option('-s, --include-env <vars>', 'only these remote variables (";"-separated, * and ? wildcards)')
    .option('-x, --exclude-env <vars>', 'not these remote variables (";"-separated, * and ? wildcards)')
    .option('--env-file <file>', 'dotenv file applied over the remote environment');
}

function buildProgram(setCode: (c: number) => void): Command {
  const log = createLogger();
  const program = new Command('mirrord')
    .description('Run a local program as if it were inside a remote container: its outgoing traffic, DNS and environment come from the target.')
    .version(version(), '-V, --version')
    .enablePositionalOptions()
    .exitOverride()
    // Usage errors follow the same one-line form as every other error.
    .configureOutput({
      outputError: (str, write) =>
        write(
          `mirrord: ${str
            .replace(/^error: /, '')
            .trim()
            .replace(/\.$/, '')}. Run \`mirrord --help\` or \`mirrord COMMAND --help\` for usage\n`,
        ),
    })
    .addHelpText(
      'after',
      `
Exit status: the program's own (128 + signal if a signal killed it), or mirrord's:
  64 usage, 65 target, 69 Docker unreachable, 70 internal, 75 agent, 78 config, 127 program not found.
Logs: MIRRORD_LOG=debug (CLI, intproxy, agent), MIRRORD_LAYER_LOG=debug (the layer), on stderr.`,
    );

  sessionOptions(
    program
      .command('exec')
      .description('run a local program in the context of a target')
      .usage('[options] -- CMD [ARGS...]')
      .option(
        '-t, --target <target>',
        'docker/NAME_OR_ID, pod/NAME[/container/C], deployment/NAME, statefulset/, rollout/, job/, cronjob/, service/, or targetless',
      ),
  )
    .argument('<command...>', 'the program and its arguments')
    .passThroughOptions()
    .action(async (command: string[], flags: ExecFlags) => {
      setCode(await (await import('./commands/exec.js')).execCommand(command, flags, log));
    });

  sessionOptions(
    program
      .command('container')
      .description('run a local container (docker run ...) in the context of a target, through a sidecar')
      .usage('[options] -- docker run [DOCKER RUN OPTIONS] IMAGE [COMMAND...]')
      .option('-t, --target <target>', 'docker/NAME_OR_ID, or a Kubernetes target (pod/NAME, deployment/NAME, ...)'),
  )
    .argument('<docker-run...>', 'docker run (or podman run) and its arguments')
    .addHelpText(
      'after',
      "\nThe target's volumes and bind mounts are copied into the container before it starts (config: container.mounts.sync,\n" +
        'container.mounts.max_size). container.capture = namespace also sends every TCP connection and DNS query of the\n' +
        'container through the target, for statically linked programs. Example:\n' +
        '  mirrord container -t docker/web -- docker run --rm -it myimage redis-cli -h cache ping',
    )
    .passThroughOptions()
    .action(async (command: string[], flags: ExecFlags) => {
      setCode(await (await import('./commands/container.js')).containerCommand(command, flags, log));
    });

  program
    .command('init')
    .description('write starting files from templates: mirrord.json, mirrord-up.yaml (--up or several -t); --compose prints x-mirrord blocks')
    .option(
      '-t, --target <target>',
      'a target, repeatable: docker/NAME_OR_ID (checked on the engine), pod/NAME, deployment/NAME, ... or targetless',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('-n, --namespace <ns>', 'namespace of the Kubernetes targets (written as {path, namespace})')
    .option('--up', 'also write mirrord-up.yaml, one service per -t (implied by several -t)')
    .option('--compose <file>', 'print x-mirrord blocks for this compose file on stdout; writes nothing')
    .option('--dir <dir>', 'directory to write into (default: the current one; created when missing)')
    .option('--force', 'overwrite existing files')
    .option('--schema <ref>', '"$schema" of mirrord.json (default: ./node_modules/mirrord/schema/mirrord.schema.json, relative to the file)')
    .action(async (flags: InitFlags) => {
      setCode(await (await import('./commands/init.js')).initCommand(flags, log, (s) => process.stdout.write(s + '\n')));
    });

  const image = program
    .command('image')
    .description("this CLI's agent image: build it, push it to a registry, or load it into a local cluster (docs/images.md)");
  image
    .command('build')
    .description('build the agent image on the local engine (when missing) and print its name')
    .action(async () => setCode(await (await import('./commands/image.js')).imageCommand('build', undefined, {}, log, (s) => process.stdout.write(s + '\n'))));
  image
    .command('push')
    .description('push the agent image as REGISTRY/NAME[:TAG] (default tag: the local one) and print the name to set as agent.image')
    .argument('<REGISTRY/NAME>')
    .action(async (ref: string) =>
      setCode(await (await import('./commands/image.js')).imageCommand('push', ref, {}, log, (s) => process.stdout.write(s + '\n'))),
    );
  image
    .command('load')
    .description("load the agent image into the kube context's local cluster (kind, k3d, minikube) or through MIRRORD_IMAGE_LOAD")
    .option('-f, --config-file <file>', 'config file for kubeconfig and kube_context (default: the same search as exec)')
    .option('--context <name>', 'kube context (default: kube_context, else the current one)')
    .action(async (flags: { configFile?: string; context?: string }) =>
      setCode(await (await import('./commands/image.js')).imageCommand('load', undefined, flags, log, (s) => process.stdout.write(s + '\n'))),
    );

  const up = program
    .command('up')
    .description('run every service of mirrord-up.yaml, each in the context of its own target, with their output together')
    .usage('[options] [SERVICE...]')
    .argument('[services...]', 'only these services (default: every service not marked skip)')
    .option(
      '-f, --file <file>',
      'the up file or compose file; repeat for compose override files (default: mirrord-up.yaml, then compose.yaml and the other names Compose looks for)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--profile <name>', 'compose files: a profile to enable, repeatable (as docker compose --profile)', (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .option('-p, --project-name <name>', 'compose files: the project name (as docker compose -p)')
    .option('--build', 'compose files: build images before starting (as docker compose up --build)')
    .option('-k, --key <key>', 'session key: {{ key }} in the file and the default split filter (default: your user name)')
    .addOption(new Option('-m, --mode <mode>', "every service's mode, over default_mode").choices(['split', 'replace', 'mirror']))
    .option('--context <name>', "kubeconfig context, over common.context and the services'")
    .option('--no-color', 'no colours in the output prefixes')
    .option('--no-log-prefix', "print the services' output lines without their name")
    .option('--no-abort', 'keep the other services running when one exits')
    .option('--timeout <seconds>', "seconds between the stop signal and SIGKILL (default 10; compose files: each service's stop_grace_period)")
    .option('--wait', 'return once every service runs, leaving them running in the background (stop them with mirrord up down)')
    .action(async (services: string[], flags: UpFlags & { wait?: boolean }) => {
      const cmd = await import('./commands/up.js');
      setCode(flags.wait ? await cmd.upDetached(process.argv.slice(2), flags, log) : await cmd.upCommand(services, flags, log));
    });
  // The detached process that ends a compose project if `mirrord up` is killed (src/up/watchdog.ts).
  program
    .command(UP_WATCHDOG_COMMAND, { hidden: true })
    .argument('<spec>')
    .action(async (spec: string) => (await import('./commands/up.js')).upWatchdog(spec));
  // The detached process that removes a copy_target copy if the CLI is killed (src/copy-target/watchdog.ts).
  program.command(COPY_WATCHDOG_COMMAND, { hidden: true }).action(async () => (await import('./copy-target/watchdog.js')).runCopyWatchdog());
  up.command('down')
    .description('stop what an earlier mirrord up left running (by the label of its key)')
    .option('-k, --key <key>', 'session key of that up (default: your user name)')
    .option('--timeout <seconds>', 'seconds a running up gets to stop before its containers are removed', '10')
    .action(async (flags: { key?: string; timeout?: string }) => {
      setCode(await (await import('./commands/up.js')).upDownCommand(flags, log, (s) => process.stdout.write(s + '\n')));
    });

  const dc = program.command('devcontainer').description('the session of a dev container: every process in it runs in the context of the target');
  const sessionFlags = (c: Command) =>
    c
      .option('-t, --target <target>', 'docker/NAME_OR_ID, pod/NAME, deployment/NAME, ... (default: the config file)')
      .option('-n, --namespace <ns>', 'namespace of the target (Kubernetes)')
      .option('--context <name>', 'kubeconfig context')
      .option('--kubeconfig <file>', 'kubeconfig file')
      .option('-f, --config-file <file>', 'config file (default: the same search as exec)')
      .addOption(new Option('--preload <mode>', 'which processes get the layer').choices(['all', 'shell', 'none']).default('all'))
      .option('--skip <programs>', '";"-separated programs the layer leaves alone (file names, or path parts with a "/"), besides IDE servers and daemons');
  sessionFlags(dc.command('start'))
    .description('start the session in the background (idempotent); returns once it is live, exit 0 with a warning when it cannot start')
    .option('--kubeconfig-secret <var>', 'environment variable holding a kubeconfig, base64 (a Codespaces secret)')
    .option('--timeout <seconds>', 'how long to wait for the session (default: agent.startup_timeout + 60)')
    .action(async (flags: DevcontainerFlags) => {
      setCode(await (await import('./commands/devcontainer.js')).devcontainerCommand('start', flags, log));
    });
  dc.command('status')
    .description('one line about the session; exit 1 when none is running')
    .action(async () => setCode(await (await import('./commands/devcontainer.js')).devcontainerCommand('status', {}, log)));
  dc.command('stop')
    .description('end the session and take the layer out of /etc/ld.so.preload (idempotent)')
    .action(async () => setCode(await (await import('./commands/devcontainer.js')).devcontainerCommand('stop', {}, log)));
  dc.command('logs')
    .description("print the session daemon's log")
    .action(async () => setCode(await (await import('./commands/devcontainer.js')).devcontainerCommand('logs', {}, log)));
  sessionFlags(dc.command('daemon', { hidden: true }))
    .description('the session daemon itself (started by start)')
    .action(async (flags: DevcontainerFlags) => {
      setCode(await (await import('./commands/devcontainer.js')).devcontainerCommand('daemon', flags, log));
    });

  program
    .command('ls')
    .description('list targets: Kubernetes pods and workloads of a namespace, and running Docker containers')
    .option('-n, --namespace <ns>', "namespace to list (default: the config's target namespace, then the context's)")
    .option('--context <name>', 'kubeconfig context')
    .option('--kubeconfig <file>', 'kubeconfig file')
    .option('-f, --config-file <file>', 'config file')
    .option('--no-docker', 'do not list Docker containers')
    .option('--no-kube', 'do not list Kubernetes targets')
    .option('--sessions', "under each Docker target, its agents' sessions (the default when stdout is a terminal)")
    .option('--no-sessions', 'targets only, also on a terminal')
    .addOption(new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (flags: LsFlags) => {
      setCode(await (await import('./commands/ls.js')).lsCommand(flags, log, (s) => process.stdout.write(s + '\n')));
    });

  program
    .command('status')
    .description(
      'the mirrord agents on the Docker engine and in a Kubernetes namespace, and their sessions: who mirrors or steals which port, with which filter, since when',
    )
    .option('-t, --target <target>', 'only the agents of this Docker target (docker/NAME_OR_ID)')
    .option('-n, --namespace <ns>', "Kubernetes namespace of the agents (default: the config's target namespace, agent.namespace, then the context's)")
    .option('--context <name>', 'kubeconfig context')
    .option('--kubeconfig <file>', 'kubeconfig file')
    .option('-f, --config-file <file>', 'config file')
    .option('--no-docker', 'do not look at the Docker engine')
    .option('--no-kube', 'do not look at Kubernetes')
    .addOption(new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (flags: StatusFlags) => {
      setCode(await (await import('./commands/status.js')).statusCommand(flags, log, (s) => process.stdout.write(s + '\n')));
    });

  program
    .command('port-forward')
    .description('forward local ports to hosts as the target reaches them (names resolved in the target)')
    .option('-t, --target <target>', 'docker/NAME_OR_ID, pod/NAME, deployment/NAME, ... or targetless')
    .option('-n, --namespace <ns>', 'namespace of the target (Kubernetes)')
    .option('-f, --config-file <file>', 'config file')
    .option('-L, --forward <spec...>', '[LOCAL_PORT:]HOST:REMOTE_PORT (repeatable)')
    .action(async (flags: { target?: string; namespace?: string; configFile?: string; forward?: string[] }) => {
      setCode(await (await import('./commands/port-forward.js')).portForwardCommand(flags.forward ?? [], flags, log));
    });

  program
    .command('diagnose')
    .description('check a session')
    .command('latency')
    .description('round-trip times to the agent of a target')
    .option('-t, --target <target>', 'docker/NAME_OR_ID, pod/NAME, deployment/NAME, ...')
    .option('-n, --namespace <ns>', 'namespace of the target (Kubernetes)')
    .option('-f, --config-file <file>', 'config file')
    .option('-c, --count <n>', 'round trips to time', '100')
    .addOption(new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (flags: { target?: string; namespace?: string; configFile?: string; count?: string; output?: string }) => {
      setCode(await (await import('./commands/diagnose.js')).diagnoseLatencyCommand(flags, log, (s) => process.stdout.write(s + '\n')));
    });

  program
    .command('verify-config')
    .description('check a config file and print the resolved configuration')
    .option('-f, --config-file <file>', 'config file (default: the same search as exec)')
    .addOption(new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (flags: { configFile?: string; output?: string }) => {
      setCode(await (await import('./commands/verify-config.js')).verifyConfigCommand(flags, (s) => process.stdout.write(s + '\n')));
    });
  return program;
}

/** Parses argv, runs the command, and returns the exit code; never calls process.exit. */
export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; commander has already printed its one-line error otherwise.
      return err.exitCode === 0 ? 0 : ExitCode.Usage;
    }
    if (err instanceof MirrordError) {
      process.stderr.write(err.oneLine() + '\n');
      return err.code;
    }
    process.stderr.write(`mirrord: internal error: ${(err as Error)?.stack ?? String(err)}\nPlease report this with the command you ran.\n`);
    return ExitCode.Internal;
  }
}
