import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { recipeTag, type ImageRecipe } from '../../src/images/build.js';
import { agentImageRecipe, agentImageTag } from '../../src/images/recipes.js';
import { cachedTag } from '../../src/images/tag-cache.js';
import { packageRoot } from '../../src/package-root.js';

describe('recipeTag', () => {
  const recipe: ImageRecipe = {
    repository: 'mirrord-unit',
    files: { Dockerfile: 'FROM scratch\n', 'a.txt': Buffer.from('hello') },
    buildArgs: { X: '1', Y: '2' },
  };

  it('is the repository and 12 hex digits, stable across calls and key order', () => {
    const tag = recipeTag(recipe);
    assert.match(tag, /^mirrord-unit:[0-9a-f]{12}$/);
    assert.equal(recipeTag(recipe), tag);
    const reordered: ImageRecipe = {
      repository: 'mirrord-unit',
      files: { 'a.txt': 'hello', Dockerfile: 'FROM scratch\n' },
      buildArgs: { Y: '2', X: '1' },
    };
    assert.equal(recipeTag(reordered), tag);
  });

  it('changes when a file, a file name or a build argument changes', () => {
    const tag = recipeTag(recipe);
    const variants: ImageRecipe[] = [
      { ...recipe, files: { ...recipe.files, 'a.txt': 'hello!' } },
      { ...recipe, files: { Dockerfile: 'FROM scratch\n', 'b.txt': 'hello' } },
      { ...recipe, files: { ...recipe.files, 'c.txt': '' } },
      { ...recipe, buildArgs: { X: '1', Y: '3' } },
      { ...recipe, buildArgs: undefined },
    ];
    const tags = variants.map(recipeTag);
    for (const t of tags) assert.notEqual(t, tag);
    assert.equal(new Set(tags).size, tags.length);
  });

  it('does not confuse moving bytes between a name and its content', () => {
    assert.notEqual(recipeTag({ repository: 'r', files: { ab: 'c' } }), recipeTag({ repository: 'r', files: { a: 'bc' } }));
  });
});

describe('cachedTag', () => {
  it('computes once for the same files, again when a file, the salt or the file list changes', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mirrord-unit-tags-'));
    try {
      const cache = path.join(dir, 'cache');
      mkdirSync(cache);
      const a = path.join(dir, 'a');
      const b = path.join(dir, 'b');
      writeFileSync(a, 'one');
      writeFileSync(b, 'two');
      let computed = 0;
      const compute = () => `tag-${++computed}`;
      assert.equal(cachedTag([a, b], 's', compute, cache), 'tag-1');
      assert.equal(cachedTag([a, b], 's', compute, cache), 'tag-1');
      assert.equal(computed, 1);
      writeFileSync(a, 'one, longer');
      assert.equal(cachedTag([a, b], 's', compute, cache), 'tag-2');
      assert.equal(cachedTag([a, b], 'other salt', compute, cache), 'tag-3');
      assert.equal(cachedTag([a], 's', compute, cache), 'tag-4');
      assert.equal(cachedTag([a, b], 's', compute, cache), 'tag-2');
      assert.equal(readdirSync(cache).length, 4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('computes every time without a cache directory, and when a file is missing', () => {
    let computed = 0;
    const compute = () => `tag-${++computed}`;
    const missing = path.join(os.tmpdir(), 'mirrord-unit-no-such-file');
    assert.equal(cachedTag([missing], 's', compute, undefined), 'tag-1');
    assert.equal(cachedTag([missing], 's', compute), 'tag-2');
  });

  it("agentImageTag is the recipe's tag, from the cache too", () => {
    const tag = recipeTag(agentImageRecipe(packageRoot()));
    assert.equal(agentImageTag(), tag);
    assert.equal(agentImageTag(), tag);
  });
});
