import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import Docker from 'dockerode';
import { ExitCode, MirrordError } from '../../common/errors.js';
import { ensureBaseImage, ensureImage, imageExists, recipeTag, type ImageRecipe } from '../../src/images/build.js';
import { quietProgress, type Progress } from '../../src/progress.js';
import { docker } from '../helpers/docker-fixtures.js';

const BASE_DOCKERFILE = 'ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n';
// The first build on a fresh machine may have to debootstrap the base image (about a minute).
const ENGINE_TIMEOUT = 10 * 60_000;

describe('ensureImage against the real engine', { timeout: ENGINE_TIMEOUT }, () => {
  const made: string[] = [];
  after(async () => {
    for (const tag of made)
      await docker()
        .getImage(tag)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('builds from the resolved base once, then is a fast no-op', async () => {
    const recipe: ImageRecipe = {
      repository: 'mirrord-unit-tiny',
      // A nonce in the context gives a tag no earlier run has built.
      files: { Dockerfile: `${BASE_DOCKERFILE}RUN true\n`, nonce: randomBytes(8).toString('hex') },
    };
    const updates: string[] = [];
    const progress: Progress = { ...quietProgress, update: (t) => updates.push(t) };
    const tag = await ensureImage(docker(), recipe, { progress });
    made.push(tag);
    assert.equal(tag, recipeTag(recipe));
    assert.ok(await imageExists(docker(), tag));
    assert.ok(
      updates.some((u) => /^building mirrord-unit-tiny image: step \d+\/\d+$/.test(u)),
      `progress lines: ${JSON.stringify(updates)}`,
    );

    updates.length = 0;
    const started = Date.now();
    assert.equal(await ensureImage(docker(), recipe, { progress }), tag);
    assert.ok(Date.now() - started < 2000, `second call took ${Date.now() - started} ms`);
    assert.deepEqual(updates, []);
  });

  it('shares one build between concurrent callers', async () => {
    const recipe: ImageRecipe = {
      repository: 'mirrord-unit-tiny',
      files: { Dockerfile: `${BASE_DOCKERFILE}RUN true\n`, nonce: randomBytes(8).toString('hex') },
    };
    const [a, b] = await Promise.all([ensureImage(docker(), recipe, { progress: quietProgress }), ensureImage(docker(), recipe, { progress: quietProgress })]);
    made.push(a);
    assert.equal(a, b);
  });

  it('reports a failed build as a MirrordError naming the image and the last output line', async () => {
    const recipe: ImageRecipe = {
      repository: 'mirrord-unit-broken',
      files: { Dockerfile: `${BASE_DOCKERFILE}RUN echo boom-$((40 + 2)) && false\n`, nonce: randomBytes(8).toString('hex') },
    };
    await assert.rejects(ensureImage(docker(), recipe, { progress: quietProgress }), (err: unknown) => {
      assert.ok(err instanceof MirrordError, String(err));
      assert.equal(err.code, ExitCode.Platform);
      assert.match(err.message, /mirrord-unit-broken:[0-9a-f]{12}/);
      assert.match(err.message, /boom-42/);
      return true;
    });
  });

  it('reports a recipe without a Dockerfile', async () => {
    await assert.rejects(
      ensureImage(docker(), { repository: 'mirrord-unit-empty', files: { 'x.txt': 'x' } }, { progress: quietProgress }),
      (err: unknown) => err instanceof MirrordError && /no Dockerfile/.test(err.message),
    );
  });

  it('fails clearly when MIRRORD_BASE_IMAGE names an image that is absent and cannot be pulled', async () => {
    // A fresh client: the resolved base is remembered per client.
    const missing = `mirrord-unit-absent-${randomBytes(4).toString('hex')}:nope`;
    await assert.rejects(
      ensureBaseImage(new Docker(), { progress: quietProgress, env: { ...process.env, MIRRORD_BASE_IMAGE: missing } }),
      (err: unknown) =>
        err instanceof MirrordError && err.code === ExitCode.Platform && err.message.includes(missing) && /MIRRORD_BASE_IMAGE/.test(err.message),
    );
  });
});
