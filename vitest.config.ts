import { defineConfig } from 'vitest/config';

// Two projects, run one after the other by `npm test`:
// - unit: pure tests, paper tests and the seeded simulator; files in parallel.
// - integration: real processes, PostgreSQL and Docker; one file at a time,
//   because on a 2-core machine parallel clusters make timing assertions
//   (elections within 2 s, ...) meaningless.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/raft/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: true,
          testTimeout: 300_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 240_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
