import { defineConfig } from 'vitest/config';

/**
 * The reliability suite (`npm run test:faults`; `npm run test:faults:short` is the part in `npm
 * test`). Scenarios restart shared services (Redis, RabbitMQ) and kill processes, so files run one
 * at a time, never beside the main suite.
 */
export default defineConfig({
  resolve: { alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }] },
  test: {
    include: ['tests/faults/**/*.faults.test.ts'],
    // Writes RELIABILITY.md from the figures the scenarios recorded, once the run ends.
    globalSetup: ['tests/faults/global-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
  },
});
