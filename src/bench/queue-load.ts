// Produce/consume load against the broker log, for `dvote bench --workload
// queue` and bench/queue.ts. Closed loop: `producers` workers each keep one
// append in flight (of `batch` messages of `messageBytes` bytes, each
// acknowledged after commit: RF replicas, fsynced), round-robin over the
// partitions, until `messages` were sent or `durationMs` passed. Then (or
// meanwhile, with consume: 'concurrent') one fetcher per partition reads
// everything back with long-polling fetches, and the run is verified: every
// acknowledged message read exactly once, at the offset it was acknowledged
// with, and each producer's messages in the order it sent them within a
// partition. Latency is per append, client-observed (HdrHistogram).
import { randomUUID } from 'node:crypto';
import * as hdr from 'hdr-histogram-js';
import { BrokerClient } from '../client/broker-client.js';
import { Producer } from '../client/producer.js';

export interface QueueLoadOptions {
  /** Manager HTTP "host:port" list. */
  managers: string[];
  /** Broker id -> reachable "host:port" (containers behind published ports). */
  brokerEndpoints?: Record<string, string>;
  /** Topic to use (created if missing); default a fresh `bench-<id>`. */
  topic?: string;
  partitions?: number;
  replicationFactor?: number;
  /** Stop after this many messages (default 100,000 unless durationMs is given). */
  messages?: number;
  durationMs?: number;
  /** Bytes per message (default 100). */
  messageBytes?: number;
  /** Concurrent producers, each with one append in flight (default 1). */
  producers?: number;
  /** Messages per append (default 1). */
  batch?: number;
  /** Read back after producing (default) or while producing. */
  consume?: 'after' | 'concurrent' | 'none';
  /** Messages per fetch (default 5,000). */
  fetchMax?: number;
  /**
   * 'append' (default): each producer sends `batch` messages per request and
   * waits for it. 'producer': `producers` callers each send one message at a
   * time through one Producer of the client library, which coalesces what is
   * in flight together into batches (lingerMs 0); latency is per message.
   */
  mode?: 'append' | 'producer';
  /** Load run and discarded before measuring (default 1,000 ms). */
  warmupMs?: number;
}

export interface QueueLoadResult {
  schema: 'dvote.bench/v1';
  workload: 'queue';
  config: Required<Omit<QueueLoadOptions, 'managers' | 'brokerEndpoints' | 'durationMs' | 'messages' | 'mode' | 'warmupMs'>> & {
    messages: number | null;
    durationMs: number | null;
    mode: 'append' | 'producer';
    warmupMs: number;
  };
  messages: { produced: number; acknowledged: number; consumed: number; failed: number };
  throughput: { producePerSec: number; consumePerSec: number; appendsPerSec: number };
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  errors: Record<string, number>;
  verify: { ok: boolean; lost: number; duplicated: number; outOfOrder: number };
  seconds: { produce: number; consume: number };
}

function round(n: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(n * f) / f;
}

export async function runQueueLoad(opts: QueueLoadOptions): Promise<QueueLoadResult> {
  const producers = opts.producers ?? 1;
  const batch = opts.batch ?? 1;
  const size = opts.messageBytes ?? 100;
  const target = opts.durationMs === undefined ? (opts.messages ?? 100_000) : (opts.messages ?? Number.POSITIVE_INFINITY);
  const consumeMode = opts.consume ?? 'after';
  const topic = opts.topic ?? `bench-${randomUUID().slice(0, 8)}`;
  const client = new BrokerClient({
    managers: opts.managers,
    connections: Math.max(16, producers + 8),
    timeoutMs: 30_000,
    ...(opts.brokerEndpoints ? { brokerEndpoints: opts.brokerEndpoints } : {}),
  });
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const errors: Record<string, number> = {};
  try {
    const info = await client.createTopic(topic, {
      ...(opts.partitions !== undefined ? { partitions: opts.partitions } : {}),
      ...(opts.replicationFactor !== undefined ? { replicationFactor: opts.replicationFactor } : {}),
    });
    const n = info.partitions.length;
    await settleLeaders(client, topic, 15_000);
    const mode = opts.mode ?? 'append';
    const warmupMs = opts.warmupMs ?? 1_000;
    if (warmupMs > 0) {
      // Same load on a scratch topic of the same shape (warms JIT, connections and the brokers' groups).
      const scratch = `${topic}-warmup`;
      await client.createTopic(scratch, { partitions: n, replicationFactor: info.replicationFactor });
      await settleLeaders(client, scratch, 15_000);
      const until = performance.now() + warmupMs;
      await Promise.all(
        Array.from({ length: producers }, async (_, w) => {
          for (let k = 0; performance.now() < until; k++) {
            await client.append(scratch, (w + k) % n, Array.from({ length: batch }, () => Buffer.alloc(size, 120))).catch(() => undefined);
          }
        }),
      );
    }

    /** partition -> offset -> (worker, seq) packed as worker * 2^32 + seq */
    const acked = Array.from({ length: n }, () => new Map<number, number>());
    let sent = 0;
    let acknowledged = 0;
    let failed = 0;
    let appends = 0;
    const deadline = opts.durationMs !== undefined ? performance.now() + opts.durationMs : Number.POSITIVE_INFINITY;
    const pad = 'x'.repeat(size);
    const value = (w: number, s: number) => {
      const head = `${w}:${s}:`;
      return Buffer.from(head + pad.slice(head.length));
    };
    let producing = true;
    const t0 = performance.now();
    const consumer = consumeMode === 'concurrent' ? consumeAll(client, topic, n, () => !producing, opts.fetchMax ?? 5_000) : null;
    const producer = mode === 'producer' ? await Producer.register(client, topic, { lingerMs: 0, maxBatch: 1000, maxInFlight: 8 }) : null;
    const sendOne = async (w: number, s: number): Promise<void> => {
      const start = performance.now();
      try {
        const r = await producer!.send(value(w, s));
        histogram.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
        appends++;
        acknowledged++;
        acked[r.partition]!.set(r.offset, w * 2 ** 32 + s);
      } catch (e) {
        failed++;
        const kind = (e as Error).message.slice(0, 80);
        errors[kind] = (errors[kind] ?? 0) + 1;
      }
    };
    await Promise.all(
      Array.from({ length: producers }, async (_, w) => {
        if (producer) {
          // One message at a time per caller; the Producer batches across callers.
          for (let s = 0; performance.now() < deadline && sent < target; s++) {
            sent++;
            await sendOne(w, s);
          }
          return;
        }
        const producerId = `bench-${w}-${randomUUID().slice(0, 8)}`;
        let seq = 0;
        let k = 0;
        for (;;) {
          if (performance.now() >= deadline || sent >= target) return;
          const count = Math.min(batch, target - sent);
          sent += count;
          const partition = (w + k++) % n;
          const first = seq;
          const values = Array.from({ length: count }, (_, i) => value(w, first + i));
          seq += count;
          const start = performance.now();
          try {
            const r = await client.append(topic, partition, values, { producerId, seq: first });
            histogram.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
            appends++;
            acknowledged += count;
            const m = acked[partition]!;
            for (let i = 0; i < count; i++) m.set(r.firstOffset + i, w * 2 ** 32 + first + i);
          } catch (e) {
            failed += count;
            const kind = (e as Error).message.slice(0, 80);
            errors[kind] = (errors[kind] ?? 0) + 1;
          }
        }
      }),
    );
    const produceSeconds = (performance.now() - t0) / 1000;
    producing = false;
    let consumed: Map<number, string>[] = [];
    let consumeSeconds = 0;
    if (consumeMode !== 'none') {
      const c0 = performance.now();
      consumed = await (consumer ?? consumeAll(client, topic, n, () => true, opts.fetchMax ?? 5_000));
      consumeSeconds = (performance.now() - (consumer ? t0 : c0)) / 1000;
    }
    const consumedCount = consumed.reduce((s, m) => s + m.size, 0);
    const verify = consumeMode === 'none' ? { ok: true, lost: 0, duplicated: 0, outOfOrder: 0 } : verifyRun(acked, consumed);
    return {
      schema: 'dvote.bench/v1',
      workload: 'queue',
      config: {
        topic,
        partitions: n,
        replicationFactor: info.replicationFactor,
        messages: Number.isFinite(target) ? target : null,
        durationMs: opts.durationMs ?? null,
        messageBytes: size,
        producers,
        batch,
        consume: consumeMode,
        fetchMax: opts.fetchMax ?? 5_000,
        mode,
        warmupMs,
      },
      messages: { produced: sent, acknowledged, consumed: consumedCount, failed },
      throughput: {
        producePerSec: round(acknowledged / produceSeconds, 1),
        consumePerSec: consumeSeconds > 0 ? round(consumedCount / consumeSeconds, 1) : 0,
        appendsPerSec: round(appends / produceSeconds, 1),
      },
      latencyMs: {
        p50: round(histogram.getValueAtPercentile(50) / 1000, 3),
        p90: round(histogram.getValueAtPercentile(90) / 1000, 3),
        p99: round(histogram.getValueAtPercentile(99) / 1000, 3),
        p999: round(histogram.getValueAtPercentile(99.9) / 1000, 3),
        max: round(histogram.maxValue / 1000, 3),
        mean: round(histogram.mean / 1000, 3),
      },
      errors,
      verify,
      seconds: { produce: round(produceSeconds, 3), consume: round(consumeSeconds, 3) },
    };
  } finally {
    histogram.destroy();
    await client.close();
  }
}

/** Wait until every partition is led by its preferred replica (placement's replicas[0]), so no leadership move lands in the measurement. */
async function settleLeaders(client: BrokerClient, topic: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = await client.topic(topic);
    if (t.partitions.every((p) => p.leader !== null && p.leader === p.replicas[0])) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const p of (await client.topic(topic)).partitions) await client.fetch(topic, p.partition, 0, { maxMessages: 1 });
}

/** Read every partition from offset 0 until it stops growing after `done()`; partition -> offset -> "w:seq". */
async function consumeAll(client: BrokerClient, topic: string, n: number, done: () => boolean, fetchMax: number): Promise<Map<number, string>[]> {
  const dec = new TextDecoder();
  return Promise.all(
    Array.from({ length: n }, async (_, p) => {
      const out = new Map<number, string>();
      let from = 0;
      for (;;) {
        const finished = done();
        const r = await client.fetch(topic, p, from, { maxMessages: fetchMax, maxBytes: 4 * 1024 * 1024, waitMs: finished ? 0 : 100 });
        for (const m of r.messages) {
          if (out.has(m.offset)) continue;
          const text = dec.decode(m.value.subarray(0, 24));
          const second = text.indexOf(':', text.indexOf(':') + 1);
          out.set(m.offset, text.slice(0, second));
        }
        from += r.messages.length;
        if (r.messages.length === 0 && finished && from >= r.highWatermark) return out;
      }
    }),
  );
}

function verifyRun(acked: Map<number, number>[], consumed: Map<number, string>[]): { ok: boolean; lost: number; duplicated: number; outOfOrder: number } {
  let lost = 0;
  let duplicated = 0;
  let outOfOrder = 0;
  const seen = new Set<string>();
  acked.forEach((m, p) => {
    const got = consumed[p] ?? new Map<number, string>();
    for (const [offset, packed] of m) {
      const want = `${Math.floor(packed / 2 ** 32)}:${packed % 2 ** 32}`;
      if (got.get(offset) !== want) lost++;
    }
    // Per producer, sequence numbers must rise with the offset within a partition.
    const lastSeq = new Map<string, number>();
    const offsets = [...got.keys()].sort((a, b) => a - b);
    offsets.forEach((o, i) => {
      if (o !== i) outOfOrder++;
      const v = got.get(o)!;
      if (seen.has(v)) duplicated++;
      seen.add(v);
      const [w, s] = v.split(':');
      const prev = lastSeq.get(w!) ?? -1;
      if (Number(s) <= prev) outOfOrder++;
      lastSeq.set(w!, Number(s));
    });
  });
  return { ok: lost === 0 && duplicated === 0 && outOfOrder === 0, lost, duplicated, outOfOrder };
}
