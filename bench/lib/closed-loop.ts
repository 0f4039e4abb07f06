// A closed-loop load: `concurrency` workers, each issuing its next operation
// as soon as the previous one returns. A warm-up phase is run and discarded;
// only operations that complete inside the measured window count, and their
// latency is measured from their own start (client-observed).
import { LatencyHistogram, round, type LatencySummary } from './latency-histogram.js';

export interface ClosedLoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** One operation; throws on failure. `seq` is unique per worker (and per run: see seqBase). */
  op: (worker: number, seq: number) => Promise<void>;
  /** Record latencies here (to merge several runs); default: a new histogram. */
  histogram?: LatencyHistogram;
  /** First `seq` of every worker (so that consecutive runs do not reuse keys). */
  seqBase?: number;
}

export interface ClosedLoopResult {
  concurrency: number;
  seconds: number;
  completed: number;
  opsPerSec: number;
  errors: number;
  /** Error messages (first 80 characters) and how often each occurred. */
  errorKinds: Record<string, number>;
  /** Latency of this run (of every run recorded into the same histogram, if one was given). */
  latency: LatencySummary;
  /** A seqBase for the next run that reuses no key. */
  nextSeq: number;
}

export async function runClosedLoop(opts: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const histogram = opts.histogram ?? new LatencyHistogram();
  let maxSeq = 0;
  const errorKinds: Record<string, number> = {};
  let completed = 0;
  let errors = 0;
  const started = performance.now();
  const measureFrom = started + opts.warmupMs;
  const end = measureFrom + opts.durationMs;

  await Promise.all(
    Array.from({ length: opts.concurrency }, async (_, worker) => {
      let seq = opts.seqBase ?? 0;
      for (; performance.now() < end; seq++) {
        const t = performance.now();
        try {
          await opts.op(worker, seq);
        } catch (e) {
          const done = performance.now();
          if (done >= measureFrom && done <= end) {
            errors++;
            const kind = String((e as Error).message ?? e).slice(0, 80);
            errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
          }
          continue;
        }
        const done = performance.now();
        if (done >= measureFrom && done <= end) {
          completed++;
          histogram.recordMs(done - t);
        }
      }
      maxSeq = Math.max(maxSeq, seq);
    }),
  );
  const seconds = opts.durationMs / 1000;
  return {
    concurrency: opts.concurrency,
    seconds,
    completed,
    opsPerSec: round(completed / seconds, 1),
    errors,
    errorKinds,
    latency: histogram.summary(),
    nextSeq: maxSeq + 1,
  };
}
