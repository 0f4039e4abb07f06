// Seeded deterministic simulation, batch 4 of the KV workload: faults of every
// kind while clients run; invariants at every step; the history must be
// linearizable. A failure names its seed and the command that replays it.
import { expect, it } from 'vitest';
import { SEED_BASE, SEEDS_PER_BATCH, runBatch, summary } from './sim/seed-batch.js';

it('simulated clusters stay safe and live under faults (KV workload, batch 4)', () => {
  const first = SEED_BASE + (4 - 1) * SEEDS_PER_BATCH;
  const rep = runBatch(first, SEEDS_PER_BATCH);
  console.log(summary(`kv batch 4 (seeds ${first}..${first + SEEDS_PER_BATCH - 1})`, rep));
  expect(rep.failures).toEqual([]);
  expect(rep.crashes).toBeGreaterThan(0);
  expect(rep.confChanges).toBeGreaterThan(0);
}, 300_000);
