import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isPair, isScalar, type Node } from 'yaml';
import { z } from 'zod';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { formatIssues } from '../config/load.js';
import { gitBranch, renderTemplate } from '../config/template.js';

/**
 * mirrord-up.yaml, mirrord's own format (docs/up.md): `common` and `services`. The file is rendered
 * as a template first ({{ key }}, {{ git_branch }}), then parsed; unknown keys and wrong types are
 * reported all at once, each with its line.
 */
const port = z.number().int().min(1).max(65535);

export const upServiceSchema = z.strictObject({
  target: z
    .union([z.string(), z.strictObject({ path: z.string().optional(), namespace: z.string().optional() })])
    .optional()
    .describe('Absent: inferred from the service name; "none": targetless; a target string; or {path, namespace}.'),
  env: z.unknown().optional().describe("mirrord's env section (include, exclude, override, env_file) for this service."),
  default_mode: z
    .enum(['split', 'replace', 'mirror'])
    .optional()
    .describe('split (default): steal requests matching the HTTP filter; replace: steal all; mirror.'),
  http_filter: z.unknown().optional().describe('The HTTP filter of split mode (default: the session key in the baggage header).'),
  ignore_ports: z.array(port).optional().describe('Local ports never subscribed.'),
  skip: z.boolean().default(false).describe('Not started unless named on the command line.'),
  context: z.string().optional().describe('Kubernetes context of this service.'),
  run: z.strictObject({
    type: z.enum(['exec', 'container']),
    command: z.array(z.string()).min(1),
  }),
});

export const upFileSchema = z.strictObject({
  common: z
    .strictObject({
      accept_invalid_certificates: z.boolean().optional(),
      operator: z.boolean().optional(),
      telemetry: z.boolean().optional(),
      context: z.string().optional(),
    })
    .optional(),
  services: z.record(z.string(), upServiceSchema),
});

export type UpFile = z.output<typeof upFileSchema>;
export type UpService = z.output<typeof upServiceSchema>;

export const UP_FILE_NAMES = ['mirrord-up.yaml', 'mirrord-up.yml'];

/** The up file named by -f, else mirrord-up.yaml or .yml in the current directory. */
export function findUpFile(file: string | undefined, cwd = process.cwd()): string {
  if (file) return path.resolve(cwd, file);
  const found = UP_FILE_NAMES.map((n) => path.join(cwd, n)).find((p) => existsSync(p));
  if (found) return found;
  throw new MirrordError(`no mirrord-up.yaml in ${cwd}`, ExitCode.Usage, 'Pass -f FILE, or write one with `mirrord init --up -t TARGET`');
}

export function loadUpFile(file: string, key: string): UpFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MirrordError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.Config, 'Check the -f path', {
      cause: err,
    });
  }
  return parseUpFile(renderTemplate(text, { key, gitBranch: () => gitBranch(path.dirname(file)) }, file), file);
}

export function parseUpFile(text: string, file: string): UpFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
    throw new MirrordError(`${file}:${line}: ${e.message.split('\n')[0]}`, ExitCode.Config, 'Fix the YAML syntax');
  }
  const result = upFileSchema.safeParse(doc.toJS() ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    return keys.map((p) => {
      const where = lineOf(doc.contents, p.map(String), lines);
      const [formatted] = formatIssues([{ ...issue, path: p } as typeof issue]);
      const message = issue.code === 'unrecognized_keys' ? 'unknown key' : formatted!.message;
      return `${file}:${where}: ${p.map(String).join('.') || '(root)'}: ${message}`;
    });
  });
  throw new MirrordError(problems.join('; '), ExitCode.Config, 'Fix those keys (docs/up.md lists the format)');
}

/** The line of the node at `keys` (for a key that is not in the file, the line of its parent). */
function lineOf(root: unknown, keys: string[], lines: LineCounter): number {
  let node = root as Node | null | undefined;
  let line = 1;
  const at = (n: { range?: [number, number, number] | null } | null | undefined) => {
    if (n?.range) line = lines.linePos(n.range[0]).line;
  };
  at(node);
  for (const key of keys) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === key);
      if (!pair) break;
      at(pair.key as Node);
      node = pair.value as Node;
    } else if (isSeq(node)) {
      node = node.items[Number(key)] as Node;
      at(node);
    } else break;
  }
  return line;
}
