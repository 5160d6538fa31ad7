import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configSchema } from './schema.js';

/**
 * Writes docs/configuration.md from the schema in code (`npm run docs`): every key path with its type,
 * default and the `.describe()` text of schema.ts. test/unit/config-docs.test.ts fails when the
 * committed page differs from `configDocs()`. Types come from the JSON Schema of what a user writes
 * (`io: 'input'`, as schema/mirrord.schema.json); defaults from the parsed side (`io: 'output'`), so a
 * default that goes through a transform (container.mounts.max_size) is shown too.
 */

type Json = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Json>;
  additionalProperties?: Json | boolean;
  items?: Json | boolean;
  prefixItems?: Json[];
  anyOf?: Json[];
  oneOf?: Json[];
  allOf?: Json[];
  minimum?: number;
  maximum?: number;
};

export interface KeyDoc {
  path: string;
  type: string;
  default: string;
  description: string | undefined;
}

/** Sections of the page: a key goes to the longest prefix that matches; `see` is a page under docs/. */
const SECTIONS: { prefix: string; title: string; see?: string; note?: string }[] = [
  { prefix: '', title: 'Target and cluster', see: 'targets.md' },
  { prefix: 'agent', title: 'Agent', see: 'kubernetes.md' },
  { prefix: 'feature', title: 'Features' },
  { prefix: 'feature.network.outgoing', title: 'Outgoing traffic', see: 'outgoing.md' },
  { prefix: 'feature.network.dns', title: 'DNS', see: 'dns.md' },
  { prefix: 'feature.network.incoming', title: 'Incoming traffic', see: 'incoming.md' },
  {
    prefix: 'feature.fs',
    title: 'Remote files',
    see: 'files.md',
    note: 'The order in which the mode and the four lists decide for a path: [files.md](files.md#which-paths-are-remote).',
  },
  { prefix: 'feature.env', title: 'Environment', see: 'env.md' },
  {
    prefix: 'container',
    title: 'Container mode',
    see: 'container.md',
    note: 'Used by `mirrord container` only: [container.md](container.md#mounted-files) (mounted files) and [container.md](container.md#namespace-level-capture) (capture).',
  },
  { prefix: 'skip_processes', title: 'Processes', see: 'exec.md#child-processes' },
];

const MiB = 1024 * 1024;

function branches(s: Json): Json[] {
  return s.anyOf ?? s.oneOf ?? s.allOf ?? [];
}

function typeName(s: Json | boolean | undefined): string {
  if (s === undefined || s === true) return 'any';
  if (s === false) return 'nothing';
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = branches(s);
  if (alts.length) return alts.map(typeName).join(' or ');
  const t = Array.isArray(s.type) ? s.type.join(' or ') : s.type;
  switch (t) {
    case 'integer': {
      if (s.minimum === 1 && s.maximum === 65535) return 'port';
      if (s.minimum !== undefined && (s.maximum === undefined || s.maximum >= Number.MAX_SAFE_INTEGER)) return `integer >= ${s.minimum}`;
      return 'integer';
    }
    case 'array':
      if (s.prefixItems) return `[${s.prefixItems.map(typeName).join(', ')}]`;
      return `list of ${typeName(s.items)}`;
    case 'object':
      if (!s.properties && s.additionalProperties !== undefined && s.additionalProperties !== false) {
        return `{NAME: ${typeName(s.additionalProperties)}}`;
      }
      return 'object';
    case undefined:
      return 'any';
    default:
      return t;
  }
}

function defaultText(value: unknown, input: Json): string {
  if (value === undefined) return '—';
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return '—';
  // A byte size that the input may also write as a string: show it the way a user would write it.
  if (typeof value === 'number' && value >= MiB && value % MiB === 0 && branches(input).some((b) => b.type === 'string')) {
    return `\`"${value / MiB}MiB"\``;
  }
  return `\`${JSON.stringify(value)}\``;
}

/** The object schemas a value may be: itself, or the object branches of a union. */
function objectsOf(s: Json): Json[] {
  if (s.properties) return [s];
  return branches(s).filter((b) => b.properties);
}

function walk(input: Json, output: Json | undefined, prefix: string, out: KeyDoc[]): void {
  for (const obj of objectsOf(input)) {
    const outObj = output
      ? (objectsOf(output).find((o) => o.properties && Object.keys(o.properties).join() === Object.keys(obj.properties!).join()) ?? output)
      : undefined;
    for (const [key, child] of Object.entries(obj.properties!)) {
      const keyPath = prefix ? `${prefix}.${key}` : key;
      const outChild = outObj?.properties?.[key];
      out.push({
        path: keyPath,
        type: typeName(child),
        default: defaultText(child.default !== undefined ? child.default : outChild?.default, child),
        description: child.description ?? outChild?.description,
      });
      walk(child, outChild, keyPath, out);
    }
  }
}

/** Every key path of the configuration, parents before their keys, in the schema's order. */
export function configKeys(): KeyDoc[] {
  const input = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Json;
  const output = z.toJSONSchema(configSchema, { io: 'output', unrepresentable: 'any' }) as Json;
  const keys: KeyDoc[] = [];
  walk(input, output, '', keys);
  return keys;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function sectionOf(keyPath: string): (typeof SECTIONS)[number] {
  let best = SECTIONS[0]!;
  for (const s of SECTIONS) {
    if (s.prefix && (keyPath === s.prefix || keyPath.startsWith(s.prefix + '.')) && s.prefix.length > best.prefix.length) best = s;
  }
  return best;
}

const PREAMBLE = `# Configuration

<!-- Generated from src/config/schema.ts by \`npm run docs\` (src/config/write-docs.ts). Do not edit:
change the .describe() texts in the schema and run it again; test/unit/config-docs.test.ts fails
when this file is stale. -->

## Where the file is found

\`-f FILE\`, else \`MIRRORD_CONFIG_FILE\`, else a search from the current directory up to the project
root: \`.mirrord/mirrord.{json,yaml,toml}\`, \`mirrord.{json,yaml,yml,toml}\`, \`.mirrordrc\`,
\`.mirrordrc.{json,yaml,yml,toml}\`, \`package.json#mirrord\`. Flags override the file and are checked the
same way (the flags and the keys they stand for: [exec.md](exec.md)). Keys follow mirrord's names, so
an existing \`mirrord.json\` works; unknown keys and wrong types are errors naming the path, all
reported at once (exit 78). \`mirrord verify-config\` checks a file the same way
([commands.md](commands.md#mirrord-verify-config)).

The JSON Schema, generated from the same schema in code (\`src/config/schema.ts\`), ships as
\`schema/mirrord.schema.json\`: point \`"$schema"\` at it for editor completion.

\`\`\`json
{
  "$schema": "./node_modules/mirrord/schema/mirrord.schema.json",
  "target": "docker/web",
  "feature": { "network": { "incoming": "steal" }, "fs": "read", "env": { "exclude": "SECRET_*" } }
}
\`\`\`

Lists written \`"A;B"\` are the same as \`["A", "B"]\` wherever a key says so. A key whose default is
"—" is unset unless given.
`;

/** The whole of docs/configuration.md. */
export function configDocs(): string {
  const keys = configKeys();
  const missing = keys.filter((k) => !k.description).map((k) => k.path);
  if (missing.length) throw new Error(`config keys without a .describe() text in src/config/schema.ts: ${missing.join(', ')}`);
  const parts = [PREAMBLE];
  for (const section of SECTIONS) {
    const rows = keys.filter((k) => sectionOf(k.path) === section);
    if (!rows.length) continue;
    parts.push(`\n## ${section.title}\n`);
    if (section.see) parts.push(`\nMore: [${section.see.replace(/#.*/, '')}](${section.see}).\n`);
    if (section.note) parts.push(`\n${section.note}\n`);
    parts.push('\n| key | type | default | meaning |\n|---|---|---|---|\n');
    for (const k of rows) {
      parts.push(`| \`${k.path}\` | ${cell(k.type)} | ${k.default} | ${cell(k.description!)} |\n`);
    }
  }
  return parts.join('');
}

/** docs/configuration.md of this checkout, from src/config/ (tsx) or dist/src/config/ (built). */
export function configDocsPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'mirrord') {
      return path.join(dir, 'docs', 'configuration.md');
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('write-docs: the mirrord package root was not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = configDocsPath();
  writeFileSync(out, configDocs());
  process.stdout.write(`wrote ${path.relative(process.cwd(), out)}\n`);
}
