#!/usr/bin/env node
// Bundles the CLI (tsc's output from dist/src, with its dependencies) into dist/cli/, the code that
// bin/mirrord.js runs: one module and its lazily loaded chunks instead of about 600 files found and
// read one by one by Node's resolver, which cost most of the CLI's start (bench/warm-start.ts).
// Code splitting keeps each command's dynamic import() a separate chunk, loaded only by that command;
// dist/src stays as it is for the tests that run the CLI in-process and for the single executable
// (scripts/build-sea.mjs).
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { versions } from './write-version.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(repo, 'dist/cli');

/**
 * Requires that dockerode and docker-modem make at load time for features a session start never uses:
 * BuildKit sessions (@grpc/grpc-js, @grpc/proto-loader, protobufjs) and ssh:// engines (ssh2). Each
 * becomes a function that requires its module at its first call, so `mirrord exec` neither runs nor
 * compiles them (about a third of the code the CLI loaded for an exec: bench/README.md, bench:start).
 * A dependency whose text no longer matches is bundled as it is, with a warning.
 */
const LAZY_REQUIRES = [
  { file: /node_modules\/dockerode\/lib\/docker\.js$/, text: "withSession = require('./session')", module: './session' },
  { file: /node_modules\/docker-modem\/lib\/modem\.js$/, text: "ssh = require('./ssh')", module: './ssh' },
  // Build contexts packed from a directory (mirrord sends its own tar stream, src/images/build.ts): an
  // object whose members require tar-fs at their first use (tar-fs, its tar-stream and bl: 50 KB).
  { file: /node_modules\/dockerode\/lib\/util\.js$/, text: "tar = require('tar-fs')", module: 'tar-fs', object: true },
  // Hijacked connections (docker attach/exec streams), with readable-stream (60 KB) below.
  { file: /node_modules\/docker-modem\/lib\/modem\.js$/, text: "HttpDuplex = require('./http_duplex')", module: './http_duplex' },
];

/**
 * Other rewrites: docker-modem formats every request's options with util.inspect (all fields, any
 * depth) for a debug line that is off unless DEBUG names it; the bundle formats them only then.
 */
const REWRITES = [
  {
    file: /node_modules\/docker-modem\/lib\/modem\.js$/,
    text: "debug('Sending: %s', util.inspect(options, {",
    to: "debug.enabled && debug('Sending: %s', util.inspect(options, {",
    what: 'every request is formatted',
  },
];

/**
 * Requires that stay out of the bundle and resolve at run time from the requiring package's installed
 * directory (its package.json, found by Node's resolver from dist/cli/), the very module it would load
 * unbundled: js-yaml (70 KB), which cosmiconfig requires for the first YAML config only, and the
 * readable-stream of docker-modem's hijacked connections.
 */
const INSTALLED_REQUIRES = [
  { file: /node_modules\/cosmiconfig\/dist\/loaders\.js$/, text: "require('js-yaml')", module: 'js-yaml', from: 'cosmiconfig' },
  { file: /node_modules\/docker-modem\/lib\/http_duplex\.js$/, text: "require('readable-stream')", module: 'readable-stream', from: 'docker-modem' },
];

const lazyRequires = {
  name: 'lazy-requires',
  setup(b) {
    // dockerode's tar-fs stays out of the bundle (resolved at its first use), and only dockerode's: the
    // Kubernetes client's own tar-fs (kubectl cp) is another version, bundled as it was.
    b.onResolve({ filter: /^tar-fs$/ }, (args) => (/node_modules\/dockerode\//.test(args.importer) ? { path: 'tar-fs', external: true } : undefined));
    // One onLoad per file (esbuild runs the first that answers), making each of its rewrites.
    const rewrites = [
      ...INSTALLED_REQUIRES.map((l) => ({
        ...l,
        what: `${l.module} stays bundled`,
        to: `require('node:module').createRequire(require.resolve('${l.from}/package.json'))('${l.module}')`,
      })),
      ...LAZY_REQUIRES.map((l) => {
        const name = l.text.split(' = ')[0];
        const to = l.object
          ? `${name} = new Proxy({}, { get: (_, k) => require('${l.module}')[k] })`
          : `${name} = function () { return require('${l.module}').apply(this, arguments); }`;
        return { ...l, what: `${l.module} stays eager`, to };
      }),
      ...REWRITES,
    ];
    const files = [...new Set(rewrites.map((r) => r.file.source))];
    for (const file of files) {
      const mine = rewrites.filter((r) => r.file.source === file);
      b.onLoad({ filter: new RegExp(file) }, (args) => {
        let source = readFileSync(args.path, 'utf8');
        const warnings = [];
        for (const r of mine) {
          if (source.includes(r.text)) source = source.replace(r.text, r.to);
          else warnings.push({ text: `lazy-requires: "${r.text}" not found; ${r.what}` });
        }
        return { contents: source, loader: 'js', warnings };
      });
    }
  },
};

/**
 * zod's namespace re-exports every locale's messages (z.locales, about 290 KB of the 570 KB zod adds to
 * every start, bench:start) and an esbuild bundle cannot drop a namespace's members; mirrord's messages
 * are zod's English ones (its default, imported by zod itself), so the bundle's z.locales holds `en` only.
 */
const englishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /node_modules\/zod\/v4\/locales\/index\.js$/ }, () => ({
      contents: 'export { default as en } from "./en.js";\n',
      loader: 'js',
    }));
  },
};

export async function buildCli() {
  const { PRODUCT_VERSION: version } = versions();
  rmSync(out, { recursive: true, force: true });
  await build({
    entryPoints: { mirrord: path.join(repo, 'dist/src/cli.js') },
    outdir: out,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    legalComments: 'none',
    // Less to parse at every start (390 CPU ms for an exec instead of 500, bench/README.md); names are
    // kept, so that an internal error's stack still says which function failed.
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: 'warning',
    plugins: [lazyRequires, englishOnly],
    // Optional modules that dependencies require in try/catch (native add-ons of ssh2 and ws, debug's
    // colour probe, cosmiconfig's TypeScript loader): resolved at run time from the package's own
    // node_modules, as they are unbundled, so their fallbacks run the same way.
    // The modules LAZY_REQUIRES defers (BuildKit's gRPC, ssh2) stay out of the bundle as well, so a
    // session start does not even compile them; the first BuildKit build or ssh:// engine requires them.
    external: [
      'cpu-features',
      'bufferutil',
      'utf-8-validate',
      'supports-color',
      'typescript',
      '*.node',
      '@grpc/grpc-js',
      '@grpc/proto-loader',
      'protobufjs',
      'ssh2',
    ],
    banner: {
      // CommonJS dependencies require Node built-ins and read __dirname, which an ESM chunk must provide;
      // packageRoot() walks up from import.meta.url, which is dist/cli/ here, to the same package root.
      js: [
        `// mirrord ${version}: generated by scripts/build-cli.mjs from dist/src; do not edit.`,
        "import { createRequire as __mirrordRequire } from 'node:module';",
        "import { fileURLToPath as __mirrordPath } from 'node:url';",
        'const require = __mirrordRequire(import.meta.url);',
        'const __filename = __mirrordPath(import.meta.url);',
        "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
      ].join('\n'),
    },
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await buildCli();
