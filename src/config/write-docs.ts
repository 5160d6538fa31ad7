import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configKeys, type KeyDoc } from './keys.js';

export { configKeys };

/**
 * Writes docs/configuration.md from the schema in code (`npm run docs`): every key path with its type,
 * default, status here (honoured, differs, no effect, refused: the schema's metadata, src/config/status.ts)
 * and the `.describe()` text of schema.ts. test/unit/config-docs.test.ts fails when the committed page
 * differs from `configDocs()`. The keys themselves come from src/config/keys.ts.
 */

/** Sections of the page: a key goes to the longest prefix that matches; `see` is a page under docs/. */
const SECTIONS: { prefix: string; also?: string[]; title: string; see?: string; note?: string }[] = [
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
  { prefix: 'skip_processes', also: ['skip_build_tools', 'skip_extra_build_tools'], title: 'Processes', see: 'exec.md#child-processes' },
  { prefix: 'internal_proxy', also: ['external_proxy'], title: "mirrord's proxies" },
  {
    prefix: 'operator',
    also: [
      'profile',
      'multi_cluster',
      'accept_invalid_certificates',
      'telemetry',
      'api',
      'use_proxy',
      'sip_binaries',
      'skip_sip',
      'experimental',
      'startup_retry',
      'ci',
      'traceparent',
      'baggage',
    ],
    title: "mirrord's other keys",
  },
];

const STATUS_TEXT: Record<KeyDoc['status'], string> = {
  honoured: 'honoured',
  differs: 'honoured with differences',
  'no-effect': 'no effect here',
  refused: 'refused',
  ours: 'ours (not in mirrord)',
};

function statusCell(k: KeyDoc): string {
  return k.why ? `${STATUS_TEXT[k.status]}: ${k.why}` : STATUS_TEXT[k.status];
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function sectionOf(keyPath: string): (typeof SECTIONS)[number] {
  let best = SECTIONS[0]!;
  for (const s of SECTIONS) {
    for (const prefix of [s.prefix, ...(s.also ?? [])]) {
      if (prefix && (keyPath === prefix || keyPath.startsWith(prefix + '.')) && prefix.length > best.prefix.length) best = s;
    }
  }
  return best;
}

const preamble = (summary: string): string => `# Configuration

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
"—" is unset unless given. \`null\` is the same as leaving a key out, as in mirrord.

## mirrord's keys here

Every key of mirrord's open-source configuration (3.250) is accepted, in every shape mirrord takes
(\`"fs": true\`, \`"incoming": "steal"\`, one string for a list, \`{path: {deployment: NAME}}\`). The
column *here* says what each does in this tool:

- **honoured**: as mirrord's reference says; **honoured with differences**: the difference is given;
- **no effect here**: accepted so the file works unchanged; \`mirrord verify-config\` prints a notice
  naming each one the file sets, with the reason;
- **refused**: the file is refused with one line naming the key and the reason, exit 78. The
  paid-operator features (\`operator: true\`, \`profile\`, \`feature.split_queues\`,
  \`feature.db_branches\`, \`feature.preview\`, label targets) say they need mirrord's operator;
  \`operator: false\` is accepted. Keys not supported yet accept their "off" value.
- **ours**: a key of this tool only.

Before parsing, every file (JSON, YAML, TOML; not package.json) is rendered as mirrord's templates
are: \`{{ key }}\` (the session key: \`MIRRORD_KEY\`, else the file's own \`key\`, else the user name),
\`{{ git_branch }}\` and \`{{ get_env(name="X", default="y") }}\`, each optionally with Tera's
\`| default(value="z")\` for a missing value. No \`target\` (or \`{namespace}\`
alone) is targetless.

Summary: ${summary}.
`;

/** The whole of docs/configuration.md. */
export function configDocs(): string {
  const keys = configKeys();
  const missing = keys.filter((k) => !k.description).map((k) => k.path);
  if (missing.length) throw new Error(`config keys without a .describe() text in src/config/schema.ts: ${missing.join(', ')}`);
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(STATUS_TEXT[k.status], (counts.get(STATUS_TEXT[k.status]) ?? 0) + 1);
  const summary = `${keys.length} key paths: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}`;
  const parts = [preamble(summary)];
  for (const section of SECTIONS) {
    const rows = keys.filter((k) => sectionOf(k.path) === section);
    if (!rows.length) continue;
    parts.push(`\n## ${section.title}\n`);
    if (section.see) parts.push(`\nMore: [${section.see.replace(/#.*/, '')}](${section.see}).\n`);
    if (section.note) parts.push(`\n${section.note}\n`);
    parts.push('\n| key | type | default | here | meaning |\n|---|---|---|---|---|\n');
    for (const k of rows) {
      parts.push(`| \`${k.path}\` | ${cell(k.type)} | ${k.default} | ${cell(statusCell(k))} | ${cell(k.description!)} |\n`);
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
