// The bank check (the ATM exercise of the original assignment, as Jepsen runs
// it): concurrent transfers through the replicated store while nodes crash and
// partitions come and go; every read sees the same total and no negative
// balance, and small histories are checked for linearizability in full.
import { expect, it } from 'vitest';
import { SEED_BASE, runBatch, summary } from './sim/seed-batch.js';

it('concurrent transfers keep the total and never go negative under faults', () => {
  const count = Number(process.env.DVOTE_SIM_BANK_SEEDS ?? '100');
  const rep = runBatch(SEED_BASE + 100_000, count, { workload: 'bank' });
  console.log(summary('bank', rep));
  expect(rep.failures).toEqual([]);
  expect(rep.acknowledgedWrites).toBeGreaterThan(0);
  expect(rep.fullChecks.ok).toBeGreaterThan(0); // most small histories are checked in full
}, 300_000);
