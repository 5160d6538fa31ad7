import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchema } from './schema.js';

/** Writes schema/mirrord.schema.json from the schema in code; run by `npm run build`. */
export function schemaText(): string {
  return JSON.stringify({ title: 'mirrord configuration', ...jsonSchema() }, null, 2) + '\n';
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../schema/mirrord.schema.json');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, schemaText());
}
