import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real clusters; running their files in parallel
    // on a 2-core machine makes timing-sensitive assertions flaky.
    fileParallelism: false,
    pool: 'forks',
  },
});
