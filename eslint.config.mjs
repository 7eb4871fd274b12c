// ESLint: typescript-eslint's strict, type-checked rules over the library, its tests, examples
// and benchmarks. Formatting is Prettier's (npm run format). Where a rule is changed below, the
// comment says why; a disable comment in the code says why at its place.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['build/**', 'native/**', 'node_modules/**', 'test/fixtures/tsx_*'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // tsconfig has noUncheckedIndexedAccess: every index read is `T | undefined`. The shared
      // cells are read at offsets that are in range by construction, and `!` says so where the
      // read happens; a check there would be dead code on the hottest paths.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Numbers and booleans print as expected in messages; objects and nullish values do not.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => void promise` and `(x) => set.add(x)` in arrow shorthand are clear enough.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true, ignoreVoidOperator: true }],
      // Names starting with _ are unused on purpose: an argument a signature requires, a value
      // bound only to be kept alive or to drain an iterator.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // node:test's describe() and test() return Promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'test', 'it', 'suite', 'before', 'after'] }],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'test/**/*.mts'],
    rules: {
      // Tests assert that calls which resolve nothing resolve undefined, as CPython's tests
      // check for None (`assert.equal(await conn.send(x), undefined)`).
      '@typescript-eslint/no-confusing-void-expression': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
