import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers, bottom to top. Between the four projects (common, src, agent, sidecar) the TypeScript
 * project references already refuse an upward import; inside src only these rules do. Each layer
 * lists the folders and files it may not import, one entry (one pattern, one message) per edge, so
 * an upward import fails `npm run lint` with the edge it breaks.
 */
const seg = (name) => `(^|/)${name}(/|\\.js$)`;
const UPPER = {
  'agent-link': seg('agent-link'),
  intproxy: seg('intproxy'),
  platforms: seg('platforms'),
  images: seg('images'),
  compose: seg('compose'),
  session: seg('session'),
  local: seg('local'),
  commands: seg('commands'),
  cli: '(^|/)cli\\.js$',
};
const OUTSIDE_SRC = { agent: '^(\\.\\./)+agent/', sidecar: '^(\\.\\./)+sidecar/' };
const layers = [
  { name: 'common', files: ['common/**/*.ts'], forbid: { src: '^(\\.\\./)+src/', ...OUTSIDE_SRC } },
  {
    name: 'config and base (config, target, env, fs, progress)',
    files: ['src/config/**/*.ts', 'src/env/**/*.ts', 'src/fs/**/*.ts', 'src/target.ts', 'src/progress.ts', 'src/program-*.ts', 'src/package-root.ts'],
    forbid: { ...UPPER, ...OUTSIDE_SRC },
  },
  { name: 'platforms and images', files: ['src/platforms/**/*.ts', 'src/images/**/*.ts', 'src/compose/**/*.ts'], forbid: { ...pick(UPPER, 'agent-link', 'intproxy', 'session', 'local', 'commands', 'cli'), ...OUTSIDE_SRC } },
  { name: 'intproxy and agent-link', files: ['src/intproxy/**/*.ts', 'src/agent-link/**/*.ts'], forbid: { ...pick(UPPER, 'platforms', 'images', 'compose', 'session', 'local', 'commands', 'cli'), ...OUTSIDE_SRC } },
  { name: 'session, local sides and up', files: ['src/session/**/*.ts', 'src/local/**/*.ts', 'src/up/**/*.ts', 'src/devcontainer/**/*.ts'], forbid: { ...pick(UPPER, 'commands', 'cli'), ...OUTSIDE_SRC } },
  { name: 'commands', files: ['src/commands/**/*.ts'], forbid: { ...pick(UPPER, 'cli'), ...OUTSIDE_SRC } },
  { name: 'agent', files: ['agent/**/*.ts'], forbid: { src: '^(\\.\\./)+src/', sidecar: OUTSIDE_SRC.sidecar } },
  { name: 'sidecar', files: ['sidecar/**/*.ts'], forbid: { ...pick(UPPER, 'platforms', 'images', 'session', 'local', 'commands', 'cli'), agent: OUTSIDE_SRC.agent } },
];

function pick(o, ...keys) {
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}

const layerRules = layers.map((l) => ({
  files: l.files,
  rules: {
    'no-restricted-imports': [
      'error',
      { patterns: Object.entries(l.forbid).map(([to, regex]) => ({ regex, message: `layering: ${l.name} may not import ${to} (it sits above, or beside, in eslint.config.js)` })) },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'agent/dist/**', 'sidecar/dist/**', 'node_modules/**', 'layer/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Type-aware: a promise nobody awaits or catches loses its error (and can hold the CLI open).
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test runs what describe/it return itself.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  ...layerRules,
);
