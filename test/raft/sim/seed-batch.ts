// Shared by the simulator test files: run a batch of seeds, collect
// failures with the seed and the command that replays it.
import { checkSeed } from './check-seed.js';
import { simOptionsForSeed } from './scenarios.js';
import type { SimOptions } from './sim-cluster.js';

export const SEED_BASE = Number(process.env.DVOTE_SIM_SEED_BASE ?? '1');
/** Seeds per batch file; CI runs several batch files (thousands of seeds in all). */
export const SEEDS_PER_BATCH = Number(process.env.DVOTE_SIM_SEEDS_PER_BATCH ?? '500');

export interface BatchReport {
  ran: number;
  failures: string[];
  events: number;
  acknowledgedWrites: number;
  unknownWrites: number;
  leaderChanges: number;
  crashes: number;
  confChanges: number;
  snapshotsSent: number;
  /** Bank seeds whose full linearizability check ran and passed / timed out. */
  fullChecks: { ok: number; unknown: number };
  ms: number;
}

export function runBatch(first: number, count: number, override: Partial<SimOptions> = {}, timeBudgetMs = 240_000): BatchReport {
  const t0 = performance.now();
  const rep: BatchReport = {
    ran: 0,
    failures: [],
    events: 0,
    acknowledgedWrites: 0,
    unknownWrites: 0,
    leaderChanges: 0,
    crashes: 0,
    confChanges: 0,
    snapshotsSent: 0,
    fullChecks: { ok: 0, unknown: 0 },
    ms: 0,
  };
  for (let seed = first; seed < first + count; seed++) {
    if (performance.now() - t0 > timeBudgetMs) {
      rep.failures.push(`time budget of ${timeBudgetMs} ms exhausted after ${rep.ran} of ${count} seeds`);
      break;
    }
    const out = checkSeed({ ...simOptionsForSeed(seed), ...override });
    rep.ran++;
    if (out.fullCheck === 'ok') rep.fullChecks.ok++;
    if (out.fullCheck === 'unknown') rep.fullChecks.unknown++;
    const s = out.result?.stats;
    if (s) {
      rep.events += s.events;
      rep.acknowledgedWrites += s.acknowledgedWrites;
      rep.unknownWrites += s.unknownWrites;
      rep.leaderChanges += s.leaderChanges;
      rep.crashes += s.crashes;
      rep.confChanges += s.confChanges;
      rep.snapshotsSent += s.snapshotsSent;
    }
    if (!out.ok) {
      const wl = override.workload ? ` --workload ${override.workload}` : '';
      rep.failures.push(`seed=${seed}: ${out.problem}\n  replay: npx tsx test/raft/sim/replay.ts --seed ${seed}${wl} --trace`);
    }
  }
  rep.ms = performance.now() - t0;
  return rep;
}

export function summary(name: string, r: BatchReport): string {
  return `${name}: ${r.ran} seeds, ${r.events} events, ${r.acknowledgedWrites} acked writes, ${r.unknownWrites} unknown, ${r.leaderChanges} leader changes, ${r.crashes} crashes, ${r.confChanges} conf changes, ${r.snapshotsSent} snapshots sent, ${(r.ms / 1000).toFixed(1)} s${r.fullChecks.ok + r.fullChecks.unknown > 0 ? `, full linearizability checks: ${r.fullChecks.ok} ok, ${r.fullChecks.unknown} timed out` : ''}`;
}
