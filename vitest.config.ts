import { defineConfig } from 'vitest/config';

export default defineConfig({
  // One graphql for everyone: @apollo/gateway loads the CommonJS build, so repository code must too,
  // or graphql's instanceof checks fail across the two copies.
  resolve: { alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }] },
  test: {
    include: ['lib/**/*.test.ts', 'router/**/*.test.ts', 'subgraphs/**/*.test.ts', 'tests/**/*.test.ts'],
    // The reliability suite restarts shared services: it runs on its own (tests/faults/vitest.config.ts).
    exclude: ['tests/faults/**', '**/node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test files start real servers and databases; two at a time suits a 2-core machine.
    maxWorkers: 2,
    pool: 'forks',
  },
});
