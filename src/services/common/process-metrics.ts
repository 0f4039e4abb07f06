// prom-client's default process metrics (CPU, memory, GC, event loop lag)
// for a node's registry. The event loop lag is sampled every
// EVENT_LOOP_SAMPLE_MS instead of prom-client's default 10 ms: that default
// is a timer firing 100 times a second in every node process, which woke
// each otherwise idle node ~100 times a second (measured with strace) and,
// with 14 processes sharing 2 cores, took CPU from the vote path. Stalls of
// the loop still show in the histogram; it is only sampled less often.
// DVOTE_EVENT_LOOP_SAMPLE_MS overrides it (bench/idle-ab.ts sets 10, the old
// value, to measure the difference side by side).
import { collectDefaultMetrics, type Registry } from 'prom-client';

export const EVENT_LOOP_SAMPLE_MS = 250;

export function eventLoopSampleMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.DVOTE_EVENT_LOOP_SAMPLE_MS);
  return Number.isInteger(v) && v >= 1 && v <= 10_000 ? v : EVENT_LOOP_SAMPLE_MS;
}

export function collectProcessMetrics(register: Registry): void {
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: eventLoopSampleMs() });
}
