import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { isMap, isPair, isScalar, parseDocument, type Pair, type YAMLMap } from 'yaml';
import { ExitCode, MirrordError, errnoCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { packageRoot } from '../package-root.js';
import { checkEngine, createDocker } from '../platforms/docker/client.js';
import { findContainer } from '../platforms/docker/target.js';
import { formatTarget, parseTarget, type TargetSpec } from '../target.js';

export interface InitFlags {
  /** -t, repeatable. */
  target?: string[];
  /** -n: namespace of the Kubernetes targets. */
  namespace?: string;
  up?: boolean;
  compose?: string;
  force?: boolean;
  dir?: string;
  /** --schema: the value of "$schema" instead of the computed one. */
  schema?: string;
}

/** A -t target, checked, with the name its service gets. */
export interface InitTarget {
  spec: TargetSpec;
  /** The target as the files write it: a string, or {path, namespace}. */
  value: string | { path: string; namespace: string };
  /** For mirrord-up.yaml and x-mirrord: "none" for targetless. */
  upValue: string | { path: string; namespace: string };
  service: string;
  /** Docker: the compose service the container belongs to (its com.docker.compose.service label). */
  composeService?: string;
}

const SCHEMA_IN_PACKAGE = 'node_modules/mirrord/schema/mirrord.schema.json';
const FLOW = { flowCollectionPadding: false, lineWidth: 0 } as const;

/**
 * `mirrord init`: starting files from templates/. mirrord.json always (target = the first -t);
 * mirrord-up.yaml with --up or several -t (one service per target); with --compose FILE only the
 * x-mirrord blocks for that compose file, printed on stdout and never written into it. Nothing is
 * overwritten without --force, and nothing is written unless every target checks out.
 */
export async function initCommand(
  flags: InitFlags,
  log: Logger,
  out: (s: string) => void,
  err: (s: string) => void = (s) => process.stderr.write(s + '\n'),
): Promise<number> {
  const targets = await resolveTargets(flags.target ?? [], flags.namespace, log, flags.compose !== undefined);

  if (flags.compose !== undefined) {
    const file = path.resolve(flags.compose);
    const services = composeServiceNames(readText(file, 'compose file', ExitCode.Usage), flags.compose);
    const { text, unmatched } = renderXMirrord(readTemplate('x-mirrord.yaml'), services, targets);
    for (const t of unmatched) err(`mirrord: warning: no service of ${flags.compose} matches -t ${formatTarget(t.spec)}; it is left out`);
    out(text.trimEnd());
    return 0;
  }

  const dir = path.resolve(flags.dir ?? '.');
  const files: Array<{ file: string; text: string }> = [
    {
      file: path.join(dir, 'mirrord.json'),
      text: renderMirrordJson(readTemplate('mirrord.json'), { target: targets[0]?.value, schema: flags.schema ?? schemaRef(dir) }),
    },
  ];
  if (flags.up || targets.length > 1) {
    files.push({ file: path.join(dir, 'mirrord-up.yaml'), text: renderUpFile(readTemplate('mirrord-up.yaml'), targets) });
  }
  if (!flags.force) {
    const existing = files.find((f) => existsSync(f.file));
    if (existing) throw exists(existing.file);
  }
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    try {
      writeFileSync(f.file, f.text, { flag: flags.force ? 'w' : 'wx' });
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') throw exists(f.file);
      throw new MirrordError(`cannot write ${shown(f.file)}: ${errnoCode(e) ?? (e as Error).message}`, ExitCode.Usage, 'Check --dir and its permissions', {
        cause: e,
      });
    }
    err(`mirrord: wrote ${shown(f.file)}`);
  }
  return 0;
}

function exists(file: string): MirrordError {
  return new MirrordError(`${shown(file)} already exists`, ExitCode.Usage, 'Pass --force to overwrite it, or --dir DIR to write elsewhere');
}

/** A path as the user would name it: relative to the current directory when below it. */
function shown(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/**
 * Parses every -t, then checks each Docker target on the engine (one check of the engine first):
 * a typo fails here, before anything is written. Kubernetes targets are checked as strings only.
 */
export async function resolveTargets(texts: string[], namespace: string | undefined, log: Logger, wantComposeLabel = false): Promise<InitTarget[]> {
  const specs = [...new Set(texts)].map((t) => parseTarget(t, namespace));
  const targets: InitTarget[] = [];
  const taken = new Set<string>();
  const seen = new Set<string>();
  let docker: Docker | undefined;
  for (let spec of specs) {
    let composeService: string | undefined;
    if (spec.kind === 'docker') {
      if (!docker) {
        docker = createDocker();
        await checkEngine(docker);
      }
      const found = await findContainer(docker, spec.container);
      log.debug(`init: docker/${spec.container} is container ${found.name} (${found.id.slice(0, 12)})`);
      // The name, not an ID: it survives the container being recreated (compose keeps names).
      spec = { kind: 'docker', container: found.name };
      if (wantComposeLabel) {
        const info = await docker.getContainer(found.id).inspect();
        composeService = info.Config.Labels?.['com.docker.compose.service'];
      }
    }
    const text = formatTarget(spec);
    const ns = spec.kind === 'docker' ? undefined : spec.namespace;
    const value = ns ? { path: text, namespace: ns } : text;
    // docker/ID and docker/NAME of one container are one target.
    if (seen.has(JSON.stringify(value))) continue;
    seen.add(JSON.stringify(value));
    targets.push({
      spec,
      value,
      upValue: spec.kind === 'targetless' ? 'none' : value,
      service: uniqueName(baseName(spec), taken),
      composeService,
    });
  }
  return targets;
}

function baseName(spec: TargetSpec): string {
  if (spec.kind === 'targetless') return 'app';
  return spec.kind === 'docker' ? spec.container : spec.name;
}

function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  taken.add(name);
  return name;
}

/**
 * The "$schema" of a written mirrord.json: a path relative to the file, so that it holds in every
 * clone of the project. The package's schema under the nearest node_modules/mirrord of the directory
 * or a parent (a project install) when there is one; otherwise the same path for a project install
 * (./node_modules/mirrord/schema/...), which resolves once the project installs mirrord (a global or
 * npx install lives outside the project, and its path would only hold on this machine).
 */
export function schemaRef(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, SCHEMA_IN_PACKAGE))) {
      const rel = path.relative(dir, path.join(d, SCHEMA_IN_PACKAGE)).split(path.sep).join('/');
      return rel.startsWith('..') ? rel : `./${rel}`;
    }
    if (path.dirname(d) === d) return `./${SCHEMA_IN_PACKAGE}`;
  }
}

export function readTemplate(name: string): string {
  return readText(path.join(packageRoot(), 'templates', name), 'template', ExitCode.Internal);
}

function readText(file: string, what: string, code: typeof ExitCode.Usage | typeof ExitCode.Internal): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new MirrordError(
      `cannot read ${what} ${file}: ${errnoCode(e) ?? (e as Error).message}`,
      code,
      code === ExitCode.Usage ? 'Check the --compose path' : undefined,
      {
        cause: e,
      },
    );
  }
}

/** templates/mirrord.json with "$schema" and "target" (left out when no -t was given) first. */
export function renderMirrordJson(template: string, o: { target?: InitTarget['value']; schema: string }): string {
  const parsed = JSON.parse(template) as Record<string, unknown>;
  const { $schema: _schema, target: _target, ...rest } = parsed;
  return JSON.stringify({ $schema: o.schema, ...(o.target !== undefined ? { target: o.target } : {}), ...rest }, null, 2) + '\n';
}

/**
 * templates/mirrord-up.yaml with its example service repeated once per target (comments kept):
 * the service's name and target change, the rest (mode, filter comment, placeholder command) stays.
 * Without targets, the example is kept as it is.
 */
export function renderUpFile(template: string, targets: InitTarget[]): string {
  const doc = parseDocument(template);
  const services = doc.get('services');
  if (!isMap(services)) throw new MirrordError('templates/mirrord-up.yaml has no services map', ExitCode.Internal);
  if (targets.length > 0) {
    const example = firstPair(services, 'mirrord-up.yaml');
    services.items = targets.map((t) => {
      const pair = example.clone();
      (pair.key as { value: unknown }).value = t.service;
      const service = pair.value as YAMLMap;
      service.set('target', doc.createNode(t.upValue));
      // No target, no incoming traffic to split.
      if (t.upValue === 'none') service.delete('default_mode');
      return pair;
    });
  }
  return doc.toString(FLOW);
}

/** The service names of a compose file (its `services` map). */
export function composeServiceNames(text: string, file: string): string[] {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new MirrordError(`cannot parse ${file}: ${doc.errors[0]!.message.split('\n')[0]}`, ExitCode.Config, 'Fix the YAML syntax of the compose file');
  }
  const services = doc.get('services');
  if (!isMap(services) || services.items.length === 0) {
    throw new MirrordError(`${file} has no services`, ExitCode.Config, 'Point --compose at a compose file with a services: map');
  }
  return services.items.flatMap((p) => (isPair(p) && isScalar(p.key) ? [String(p.key.value)] : []));
}

/**
 * templates/x-mirrord.yaml for a compose file's services. With targets: an x-mirrord for each service
 * a target matches (the service's name is the target's name, or the Docker container's compose
 * service label), and the targets that match none. Without: every service, with a placeholder target.
 */
export function renderXMirrord(template: string, composeServices: string[], targets: InitTarget[]): { text: string; unmatched: InitTarget[] } {
  const doc = parseDocument(template);
  const services = doc.get('services');
  if (!isMap(services)) throw new MirrordError('templates/x-mirrord.yaml has no services map', ExitCode.Internal);
  const example = firstPair(services, 'x-mirrord.yaml');
  const unmatched: InitTarget[] = [];
  const chosen = new Map<string, InitTarget | undefined>();
  if (targets.length === 0) {
    for (const s of composeServices) chosen.set(s, undefined);
  } else {
    for (const t of targets) {
      const name = [t.composeService, t.service, baseName(t.spec)].find((n) => n !== undefined && composeServices.includes(n) && !chosen.has(n));
      if (name) chosen.set(name, t);
      else unmatched.push(t);
    }
  }
  // In the compose file's order, so the printed blocks read top to bottom like the file.
  services.items = composeServices
    .filter((s) => chosen.has(s))
    .map((s) => {
      const t = chosen.get(s);
      const pair = example.clone();
      (pair.key as { value: unknown }).value = s;
      const block = (pair.value as YAMLMap).get('x-mirrord', true);
      if (!isMap(block)) throw new MirrordError('templates/x-mirrord.yaml: the example service has no x-mirrord map', ExitCode.Internal);
      const target = doc.createNode(t ? t.upValue : `deployment/${s}`);
      if (!t) target.comment = ' placeholder: check the kind and the name';
      block.set('target', target);
      return pair;
    });
  if (services.items.length === 0) doc.delete('services');
  return { text: doc.toString(FLOW), unmatched };
}

function firstPair(map: YAMLMap, template: string): Pair {
  const pair = map.items[0];
  if (!isPair(pair) || !isMap(pair.value)) throw new MirrordError(`templates/${template}: no example service`, ExitCode.Internal);
  return pair;
}
