// ESLint flat config: recommended and type-aware rules for the TypeScript sources, plus the Temporal
// workflow sandbox for workflows/** (no IO, no Node built-ins, activities imported as types only).
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';
import { importX, createNodeResolver } from 'eslint-plugin-import-x';

const root = path.dirname(fileURLToPath(import.meta.url));

/** Node built-ins under their bare names (fs, path, crypto, ...); `node:*` is caught by a pattern. */
const nodeBuiltins = builtinModules.filter((name) => !name.startsWith('_') && !name.startsWith('node:'));

const sandboxMessage = 'Workflow code runs in the Temporal sandbox: no IO, no Node built-ins. Do it in an activity.';
const typeOnlyMessage =
  'Workflows may import this only with `import type`; a value import would pull IO into the workflow bundle.';

/** Everything a workflow must not import. Test files under workflows/ are exempt: they never enter the bundle. */
const workflowSandbox = {
  paths: [
    ...nodeBuiltins.map((name) => ({ name, message: sandboxMessage })),
    { name: 'execa', message: sandboxMessage },
    { name: 'pino', message: 'Workflows log with `log` from @temporalio/workflow.' },
    { name: '@temporalio/activity', message: 'Activity APIs do not work inside workflows.' },
    { name: '@temporalio/client', message: 'Use child workflows, signals or activities from @temporalio/workflow.' },
    { name: '@temporalio/worker', message: 'The worker is built in workers/, never from a workflow.' },
  ],
  patterns: [
    { regex: '^node:', message: sandboxMessage },
    { group: ['@nats-io/*'], message: 'NATS is reached through activities only.' },
    { group: ['execa/*', 'pino/*'], message: sandboxMessage },
    // Activities, process entry points and the CLI do IO; their types are fine, their values are not.
    { regex: '^(\\.\\./)+(activities|workers|cli)(/|$)', allowTypeImports: true, message: typeOnlyMessage },
  ],
};

/**
 * Dependencies flow one way: schemas ← workflows ← activities ← workers ← lab ← cli. A folder may
 * import only from the folders left of it; bench/, scripts/ and test/ use what the CLI uses, never
 * the CLI itself. Test files are held to the same rule as the code beside them.
 */
const LAYERS = ['schemas', 'workflows', 'activities', 'workers', 'lab', 'cli'];
const layerZones = [
  ...LAYERS.map((target, i) => ({
    target: `./${target}`,
    from: LAYERS.slice(i + 1).map((above) => `./${above}`),
    message: `${target}/ sits below ${LAYERS.slice(i + 1).join(', ')} (schemas ← workflows ← activities ← workers ← lab ← cli): move the shared piece down, or inject it.`,
  })).filter((zone) => zone.from.length > 0),
  ...LAYERS.map((target) => ({
    target: `./${target}`,
    from: ['./bench', './scripts', './test'],
    message: 'Product code never imports bench/, scripts/ or test/.',
  })),
  {
    target: ['./bench', './scripts', './test'],
    from: './cli',
    message:
      'cli/ is commands and rendering only: use the function the command calls (workers/, lab/), or run the CLI.',
  },
];

export default defineConfig(
  globalIgnores(['dist/', 'node_modules/', '.refit/', 'coverage/']),

  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: root },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js', '.mjs', '.cjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Sources import `./names.js` and mean `./names.ts` (NodeNext); resolve it the way tsc does.
      'import-x/resolver-next': [
        createNodeResolver({
          extensions: ['.ts', '.js', '.mjs', '.cjs', '.json', '.node'],
          extensionAlias: { '.js': ['.ts', '.js'] },
        }),
      ],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports' }],
      // With verbatimModuleSyntax, `import { type A } from 'x'` still loads 'x' at run time.
      '@typescript-eslint/no-import-type-side-effects': 'error',
      // An async activity or port method without await is fine; a missing await is caught above.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'import-x/no-duplicates': 'error',
      'import-x/no-restricted-paths': ['error', { basePath: root, zones: layerZones }],
    },
  },

  {
    files: ['workflows/**/*.ts'],
    ignores: ['workflows/**/*.test.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', workflowSandbox],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: sandboxMessage },
        { name: 'Buffer', message: sandboxMessage },
        { name: 'require', message: sandboxMessage },
      ],
    },
  },

  {
    // Asymmetric matchers (expect.any, expect.stringMatching, ...) are typed `any`.
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },

  {
    // Plain JavaScript (this file, deploy scripts): Node ESM, outside the TypeScript project.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', TextEncoder: 'readonly' },
    },
  },

  {
    // The web view's script (cli/ui/static): runs in the operator's browser, served as it is.
    files: ['cli/ui/static/**/*.js'],
    languageOptions: {
      globals: {
        document: 'readonly',
        window: 'readonly',
        location: 'readonly',
        fetch: 'readonly',
        Node: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
  },
);
