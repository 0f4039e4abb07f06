// Run one seed and check everything: the invariants (inside the simulator),
// then linearizability of the client history, or the bank invariants.
import { checkOperations } from '../../utils/linearizability.js';
import { kvModel } from '../../utils/kv-model.js';
import { checkBankInvariants, createBankModel } from '../../utils/bank-check.js';
import { toBankOperations, toKvOperations } from './history.js';
import { runSimulation, type SimOptions, type SimResult } from './sim-cluster.js';

export interface SeedOutcome {
  seed: number;
  ok: boolean;
  problem?: string;
  result?: SimResult;
  /** Bank workload: outcome of the full linearizability check (invariants are always checked). */
  fullCheck?: 'ok' | 'unknown' | 'skipped';
}

export function checkSeed(opts: SimOptions, linearizabilityTimeoutMs = 10_000): SeedOutcome {
  let result: SimResult;
  try {
    result = runSimulation(opts);
  } catch (e) {
    return { seed: opts.seed, ok: false, problem: e instanceof Error ? e.message : String(e) };
  }
  if (opts.workload === 'bank') {
    const ops = toBankOperations(result.bankHistory);
    const inv = checkBankInvariants(ops, { initialBalances: result.bankInitialBalances });
    if (!inv.ok) {
      const v = inv.violations[0]!;
      return { seed: opts.seed, ok: false, result, problem: `bank invariant: ${v.problem}` };
    }
    if (ops.length <= 400) {
      const lin = checkOperations(createBankModel({ initialBalances: result.bankInitialBalances }), ops, {
        timeoutMs: linearizabilityTimeoutMs,
      });
      if (lin.result === 'illegal') {
        return { seed: opts.seed, ok: false, result, problem: `bank history not linearizable:\n${lin.explanation.text}` };
      }
      // A full check that times out proves nothing either way; the invariants above still held.
      return { seed: opts.seed, ok: true, result, fullCheck: lin.result };
    }
    return { seed: opts.seed, ok: true, result, fullCheck: 'skipped' };
  }
  const lin = checkOperations(kvModel, toKvOperations(result.history), { timeoutMs: linearizabilityTimeoutMs });
  if (lin.result === 'illegal') {
    return { seed: opts.seed, ok: false, result, problem: `history not linearizable:\n${lin.explanation.text}` };
  }
  if (lin.result === 'unknown') {
    return { seed: opts.seed, ok: false, result, problem: `linearizability check gave up: ${lin.reason}` };
  }
  return { seed: opts.seed, ok: true, result };
}
