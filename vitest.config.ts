import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    globalSetup: ['test/setup/global-stack.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores, and the integration suites share one stack: one test file at a time for now.
    fileParallelism: false,
  },
});
