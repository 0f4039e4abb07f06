import { describe, expect, it } from 'vitest';
import { runLoad } from '../../src/bench/load-generator.js';

describe('load generator', () => {
  it('closed loop runs exactly the budget with C in flight at most', async () => {
    let inFlight = 0;
    let maxSeen = 0;
    const r = await runLoad({
      mode: { kind: 'closed', concurrency: 4 },
      total: 200,
      op: async () => {
        inFlight++;
        maxSeen = Math.max(maxSeen, inFlight);
        await new Promise((res) => setTimeout(res, 1));
        inFlight--;
        return { ok: true };
      },
    });
    expect(r.started).toBe(200);
    expect(r.ok).toBe(200);
    expect(maxSeen).toBe(4);
  });

  it('open loop measures from the intended send time: a server stall shows as latency (no coordinated omission)', async () => {
    // 200 req/s for 1 s; the "server" stalls every request for the first 300 ms.
    const t0 = performance.now();
    const r = await runLoad({
      mode: { kind: 'open', rate: 200, maxInFlight: 1000 },
      durationMs: 1000,
      op: async () => {
        const stallUntil = t0 + 300;
        const wait = Math.max(1, stallUntil - performance.now());
        await new Promise((res) => setTimeout(res, wait));
        return { ok: true };
      },
    });
    expect(r.started).toBeGreaterThanOrEqual(190);
    // the first requests waited ~300 ms: p90 would be tiny if latency were measured
    // from the actual send only after the stall; here the max reflects the stall
    expect(r.latency.max).toBeGreaterThan(250);
    expect(r.latency.p50).toBeLessThan(100);
  });

  it('open loop refuses to pile up beyond maxInFlight and counts it as overload', async () => {
    const r = await runLoad({
      mode: { kind: 'open', rate: 500, maxInFlight: 5 },
      durationMs: 300,
      op: () => new Promise((res) => setTimeout(() => res({ ok: true }), 200)),
    });
    expect(r.errorsByKind['overload: too many requests in flight']).toBeGreaterThan(50);
  });

  it('counts units for batched operations and errors by kind', async () => {
    const r = await runLoad({
      mode: { kind: 'closed', concurrency: 2 },
      total: 10,
      op: async (i) => (i % 5 === 0 ? { ok: false, kind: 'boom', units: 100 } : { ok: true, units: 100 }),
    });
    expect(r.okUnits).toBe(800);
    expect(r.failedUnits).toBe(200);
    expect(r.errorsByKind).toEqual({ boom: 2 });
  });

  it('measures itself: a generator whose event loop is held shows it as event-loop delay and as late sends, and its CPU', async () => {
    // Open loop at 200/s for 600 ms; every 40th request holds the generator's thread for 40 ms.
    let n = 0;
    const r = await runLoad({
      mode: { kind: 'open', rate: 200, maxInFlight: 1000 },
      durationMs: 600,
      op: async () => {
        if (n++ % 40 === 0) {
          const until = performance.now() + 40;
          while (performance.now() < until) {
            // busy: the generator itself is late, not the server
          }
        }
        await new Promise((res) => setTimeout(res, 1));
        return { ok: true };
      },
    });
    expect(r.generator.eventLoopDelayMs.max).toBeGreaterThanOrEqual(25);
    expect(r.generator.sendLagMs).not.toBeNull();
    expect(r.generator.sendLagMs!.max).toBeGreaterThanOrEqual(30);
    expect(r.generator.sendLagMs!.count).toBe(r.started);
    expect(r.generator.cpuCores).toBeGreaterThan(0.1);

    // A quiet closed loop: no send lag to speak of (closed loop has none), a small delay.
    const q = await runLoad({
      mode: { kind: 'closed', concurrency: 2 },
      durationMs: 300,
      op: async () => {
        await new Promise((res) => setTimeout(res, 5));
        return { ok: true };
      },
    });
    expect(q.generator.sendLagMs).toBeNull();
    expect(q.generator.eventLoopDelayMs.p50).toBeLessThan(10);
    expect(q.generator.cpuCores).toBeLessThan(r.generator.cpuCores);
  });
});
