// The load driver of `dvote bench`: closed loop (C workers, each sends its
// next request when the previous one returns) or open loop (requests sent at
// a fixed rate whatever the answers; latency measured from the *intended*
// send time, so a stalled server shows up as latency instead of as fewer
// requests: coordinated omission is not hidden). Bounded by a count and/or a
// duration, and by an in-flight cap in open loop.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { LatencyHistogram, type LatencySummary } from './histogram.js';

export type LoadMode = { kind: 'closed'; concurrency: number } | { kind: 'open'; rate: number; maxInFlight: number };

/** What one operation reports back. `units` lets a batched request count as many votes. */
export type OpOutcome = { ok: true; units?: number } | { ok: false; kind: string; units?: number };

export interface LoadOptions {
  mode: LoadMode;
  /** Stop after this many operations were started (total budget). */
  total?: number;
  /** Stop starting operations after this long. At least one of total/durationMs must be set. */
  durationMs?: number;
  op: (i: number) => Promise<OpOutcome>;
  /** Called about once per second with the running totals. */
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface LoadProgress {
  elapsedMs: number;
  started: number;
  ok: number;
  failed: number;
  inFlight: number;
}

export interface TimelinePoint {
  /** Seconds since the start of the load. */
  t: number;
  ok: number;
  failed: number;
  okUnits: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * The load generator measuring itself: it shares the machine with the
 * cluster, and any delay of its own is inside every latency it reports
 * (an answer read late by a busy generator counts as a slow answer).
 */
export interface GeneratorStats {
  /** CPU the generator's process used over the run, in cores. */
  cpuCores: number;
  /** How late its event loop ran (timers sampled every 10 ms): a busy generator reads answers late by about this much. */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** Open loop: how late each request started against its intended send time (null in closed loop). */
  sendLagMs: LatencySummary | null;
}

const LOOP_RESOLUTION_MS = 10;

export interface LoadResult {
  mode: LoadMode;
  started: number;
  ok: number;
  okUnits: number;
  failed: number;
  failedUnits: number;
  /** Open loop: sends that could not start because maxInFlight was reached (they count as failed, kind "overload"). */
  errorsByKind: Record<string, number>;
  elapsedMs: number;
  latency: LatencySummary;
  timeline: TimelinePoint[];
  generator: GeneratorStats;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (opts.total === undefined && opts.durationMs === undefined) throw new Error('load: give a total or a duration');
  const hist = new LatencyHistogram();
  const errorsByKind: Record<string, number> = {};
  const timeline: TimelinePoint[] = [];
  let bucket = { ok: 0, failed: 0, okUnits: 0, h: new LatencyHistogram() };
  let started = 0;
  let ok = 0;
  let okUnits = 0;
  let failed = 0;
  let failedUnits = 0;
  let inFlight = 0;
  const sendLag = opts.mode.kind === 'open' ? new LatencyHistogram() : null;
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loopDelay.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const endAt = opts.durationMs !== undefined ? t0 + opts.durationMs : Infinity;
  const total = opts.total ?? Infinity;
  const more = () => started < total && performance.now() < endAt && !opts.signal?.aborted;

  const flushBucket = () => {
    const s = bucket.h.summary();
    timeline.push({
      t: Math.round((performance.now() - t0) / 100) / 10,
      ok: bucket.ok,
      failed: bucket.failed,
      okUnits: bucket.okUnits,
      p50: s.p50,
      p99: s.p99,
      max: s.max,
    });
    bucket = { ok: 0, failed: 0, okUnits: 0, h: new LatencyHistogram() };
    opts.onProgress?.({ elapsedMs: performance.now() - t0, started, ok, failed, inFlight });
  };
  const ticker = setInterval(flushBucket, 1000);

  const record = (outcome: OpOutcome, latencyMs: number) => {
    const units = outcome.units ?? 1;
    if (outcome.ok) {
      ok++;
      okUnits += units;
      bucket.ok++;
      bucket.okUnits += units;
      hist.recordMs(latencyMs);
      bucket.h.recordMs(latencyMs);
    } else {
      failed++;
      failedUnits += units;
      bucket.failed++;
      errorsByKind[outcome.kind] = (errorsByKind[outcome.kind] ?? 0) + 1;
    }
  };

  const one = async (i: number, intended: number) => {
    sendLag?.recordMs(performance.now() - intended);
    inFlight++;
    let outcome: OpOutcome;
    try {
      outcome = await opts.op(i);
    } catch (e) {
      outcome = { ok: false, kind: String((e as Error).message ?? e).slice(0, 80) };
    }
    inFlight--;
    record(outcome, performance.now() - intended);
  };

  try {
    if (opts.mode.kind === 'closed') {
      const workers = Array.from({ length: opts.mode.concurrency }, async () => {
        while (more()) {
          const i = started++;
          await one(i, performance.now());
        }
      });
      await Promise.all(workers);
    } else {
      const { rate, maxInFlight } = opts.mode;
      const interval = 1000 / rate;
      const pending = new Set<Promise<void>>();
      let next = t0;
      while (more()) {
        const now = performance.now();
        if (now < next) {
          await new Promise((r) => setTimeout(r, Math.min(next - now, 50)));
          continue;
        }
        // Send everything that is due now (catch up after a timer delay).
        while (next <= performance.now() && more()) {
          const i = started++;
          const intended = next;
          next += interval;
          if (inFlight >= maxInFlight) {
            record({ ok: false, kind: 'overload: too many requests in flight' }, 0);
            continue;
          }
          const p = one(i, intended).finally(() => pending.delete(p));
          pending.add(p);
        }
      }
      await Promise.all(pending);
    }
  } finally {
    clearInterval(ticker);
    loopDelay.disable();
  }
  flushBucket();
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // The histogram holds the time between two timer runs 10 ms apart: the lateness is what exceeds 10 ms.
  const ms = (ns: number) => (Number.isFinite(ns) ? Math.max(0, Math.round(ns / 1e3 - LOOP_RESOLUTION_MS * 1e3) / 1e3) : 0);
  const generator: GeneratorStats = {
    cpuCores: Math.round(((cpu.user + cpu.system) / 1e3 / Math.max(elapsedMs, 1)) * 100) / 100,
    eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    sendLagMs: sendLag ? sendLag.summary() : null,
  };
  return {
    mode: opts.mode,
    started,
    ok,
    okUnits,
    failed,
    failedUnits,
    errorsByKind,
    elapsedMs,
    latency: hist.summary(),
    timeline,
    generator,
  };
}
