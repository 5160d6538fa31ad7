import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

/** The devcontainer.json examples of the docs name only options the feature declares. */
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const feature = JSON.parse(readFileSync(path.join(repo, 'templates/devcontainer-feature/src/mirrord/devcontainer-feature.json'), 'utf8')) as {
  id: string;
  options: Record<string, { type: string; enum?: string[]; default: unknown }>;
};

/** The jsonc blocks of a markdown file that hold a whole devcontainer.json ("features" at the top). */
function examples(file: string): Array<{ features?: Record<string, Record<string, unknown>> }> {
  const text = readFileSync(path.join(repo, file), 'utf8');
  return [...text.matchAll(/```jsonc\n([\s\S]*?)```/g)]
    .map((m) => m[1]!.replace(/^\s*\/\/.*$/gm, ''))
    .filter((t) => t.trim().startsWith('{') && t.includes('"features"'))
    .map((t) => JSON.parse(t) as { features?: Record<string, Record<string, unknown>> });
}

describe('devcontainer.json examples in the docs', () => {
  for (const file of ['docs/codespaces.md', 'docs/devcontainer.md', 'templates/devcontainer-feature/src/mirrord/README.md']) {
    it(`${file}: valid, and every option of ./mirrord exists with a value of its type`, () => {
      const found = examples(file);
      assert.ok(found.length > 0, `no devcontainer.json example in ${file}`);
      for (const ex of found) {
        const opts = ex.features?.[`./${feature.id}`];
        assert.ok(opts, `the example does not use ./${feature.id}`);
        for (const [k, v] of Object.entries(opts)) {
          const decl = feature.options[k];
          assert.ok(decl, `${file}: option ${k} is not in devcontainer-feature.json`);
          assert.equal(typeof v, decl.type, `${file}: option ${k}`);
          if (decl.enum) assert.ok(decl.enum.includes(String(v)), `${file}: ${k}: ${String(v)} is not one of ${decl.enum.join(', ')}`);
        }
      }
    });
  }
});
