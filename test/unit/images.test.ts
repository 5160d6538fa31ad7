import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recipeTag, type ImageRecipe } from '../../src/images/build.js';

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
