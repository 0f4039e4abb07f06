// The broker log's acceptance flow through the real CLI and real node
// processes (or containers), shared by the process and docker test files:
// produce N messages while the partition leader is SIGKILLed twice; every
// acknowledged message is consumed exactly once per consumer, at the offset
// it was acknowledged with, in order within its partition; a consumer's
// offsets survive a restart of every broker.
import { expect } from 'vitest';
import { BrokerClient } from '../../src/client/broker-client.js';
import { Consumer } from '../../src/client/consumer.js';
import { Producer } from '../../src/client/producer.js';
import { describeResult, dvote, type CliResult } from '../utils/cli.js';

export interface StatusDocJson {
  healthy: boolean;
  nodes: { name: string; role: string; state: string; healthy: boolean; endpoint: string }[];
  partitions: { topic: string; partition: number; leader: string | null; replicas: string[]; learners: string[]; highWatermark: number | null; reportedBy: string[] }[];
}

export function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`dvote failed: ${describeResult(r)}`);
  return r;
}

export async function statusDoc(base: string[], env: Record<string, string>): Promise<StatusDocJson> {
  const r = await dvote([...base, 'status', '--json'], env);
  if (!r.json) throw new Error(`status printed no JSON: ${describeResult(r)}`);
  return r.json as unknown as StatusDocJson;
}

export async function brokerClient(base: string[], env: Record<string, string>, opts: { mapEndpoints?: boolean } = {}): Promise<BrokerClient> {
  const s = await statusDoc(base, env);
  const strip = (e: string) => e.replace(/^https?:\/\//, '');
  const managers = s.nodes.filter((n) => n.role === 'manager').map((n) => strip(n.endpoint));
  const brokerEndpoints = opts.mapEndpoints ? Object.fromEntries(s.nodes.filter((n) => n.role === 'broker').map((n) => [n.name, strip(n.endpoint)])) : undefined;
  return new BrokerClient({ managers, timeoutMs: 20_000, ...(brokerEndpoints ? { brokerEndpoints } : {}) });
}

/** Wait until every partition of `topic` has a leader (and, if given, exactly these replicas). */
export async function waitForLeaders(base: string[], env: Record<string, string>, topic: string, partitions: number, timeoutMs: number, check?: (p: StatusDocJson['partitions'][number]) => boolean): Promise<StatusDocJson> {
  const deadline = Date.now() + timeoutMs;
  let last: StatusDocJson | null = null;
  while (Date.now() < deadline) {
    last = await statusDoc(base, env);
    const rows = last.partitions.filter((p) => p.topic === topic);
    if (rows.length === partitions && rows.every((p) => p.leader !== null && (!check || check(p)))) return last;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`partitions of ${topic} not ready within ${timeoutMs} ms: ${JSON.stringify(last?.partitions.filter((p) => p.topic === topic))}`);
}

const dec = new TextDecoder();

function payload(producer: number, seq: number): string {
  const head = `p${producer}-${seq}:`;
  return head + 'x'.repeat(Math.max(0, 100 - head.length));
}

interface Acked {
  /** partition -> offset -> value */
  byPartition: Map<number, Map<number, string>>;
  count: number;
  failedValues: Set<string>;
}

/** Consume with `c` until it has taken `until` messages (or the topic is drained and `done()`); returns [partition, offset, value] in consumption order. */
async function consume(c: Consumer, stop: () => boolean, limit = Infinity): Promise<{ partition: number; offset: number; value: string }[]> {
  const got: { partition: number; offset: number; value: string }[] = [];
  while (got.length < limit) {
    const batch = await c.dequeue(Math.min(1000, limit - got.length));
    for (const m of batch) got.push({ partition: m.partition, offset: m.offset, value: dec.decode(m.value) });
    if (batch.length === 0) {
      if (stop()) {
        // One more round after the producers stopped, then done.
        const tail = await c.dequeue(1000);
        if (tail.length === 0) break;
        for (const m of tail) got.push({ partition: m.partition, offset: m.offset, value: dec.decode(m.value) });
        continue;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return got;
}

/** Exactly once, at the acknowledged offset, in offset order per partition. */
export function verifyConsumption(acked: Acked, got: { partition: number; offset: number; value: string }[], label: string): void {
  const seenValues = new Set<string>();
  const lastOffset = new Map<number, number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let mismatched = 0;
  for (const g of got) {
    if (seenValues.has(g.value)) duplicated++;
    seenValues.add(g.value);
    const prev = lastOffset.get(g.partition) ?? -1;
    if (g.offset !== prev + 1) outOfOrder++;
    lastOffset.set(g.partition, g.offset);
    const want = acked.byPartition.get(g.partition)?.get(g.offset);
    if (want !== undefined && want !== g.value) mismatched++;
    if (want === undefined && !acked.failedValues.has(g.value)) mismatched++;
  }
  let lost = 0;
  for (const m of acked.byPartition.values()) for (const v of m.values()) if (!seenValues.has(v)) lost++;
  console.log(`${label}: consumed ${got.length}, acknowledged ${acked.count}, failed ${acked.failedValues.size}, lost ${lost}, duplicated ${duplicated}, out of order ${outOfOrder}, mismatched ${mismatched}`);
  expect({ lost, duplicated, outOfOrder, mismatched }).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0, mismatched: 0 });
}

export async function produceThroughLeaderKills(
  base: string[],
  env: Record<string, string>,
  opts: { topic: string; messages: number; producers: number; batch: number; mapEndpoints?: boolean },
): Promise<void> {
  const client = await brokerClient(base, env, { mapEndpoints: opts.mapEndpoints ?? false });
  try {
    await client.createTopic(opts.topic, { partitions: 3, replicationFactor: 3 });
    await waitForLeaders(base, env, opts.topic, 3, 30_000);
    const consumerA = await Consumer.register(client, opts.topic);
    const consumerB = await Consumer.register(client, opts.topic);
    const producers = await Promise.all(Array.from({ length: opts.producers }, () => Producer.register(client, opts.topic)));
    const acked: Acked = { byPartition: new Map([0, 1, 2].map((p) => [p, new Map()])), count: 0, failedValues: new Set() };
    const perProducer = Math.ceil(opts.messages / opts.producers);
    let producing = true;
    let producedUntil = Number.POSITIVE_INFINITY;
    const kills: { name: string; at: number; acked: number }[] = [];
    const killAt = [Math.floor(opts.messages * 0.15), Math.floor(opts.messages * 0.5)];

    const killer = (async () => {
      for (const at of killAt) {
        while (acked.count < at && producing) await new Promise((r) => setTimeout(r, 50));
        if (!producing) return;
        const r = ok(await dvote([...base, 'kill', '--role', 'broker', '--leader-of', `${opts.topic}/0`, '--restart-after', '1s', '--json'], env));
        const k = { name: (r.json?.targets as { name: string }[])[0]!.name, at: Date.parse(String(r.json?.at)), acked: at };
        kills.push(k);
        console.log(`killed leader ${k.name} of ${opts.topic}/0 (asked at ${at} acknowledged messages, restarted it 1 s later; ${acked.count} acknowledged by then)`);
      }
    })();

    const t0 = performance.now();
    const consumingA = consume(consumerA, () => !producing);
    await Promise.all(
      producers.map(async (p, k) => {
        for (let i = 0; i < perProducer; i += opts.batch) {
          const values = Array.from({ length: Math.min(opts.batch, perProducer - i) }, (_, j) => payload(k, i + j));
          const partition = (i / opts.batch + k) % 3;
          try {
            const r = await p.sendBatch(values, partition);
            const m = acked.byPartition.get(partition)!;
            values.forEach((v, j) => m.set(r.firstOffset + j, v));
            acked.count += values.length;
          } catch (e) {
            console.log(`batch failed: ${(e as Error).message}`);
            for (const v of values) acked.failedValues.add(v);
          }
        }
      }),
    );
    const produceMs = performance.now() - t0;
    producedUntil = Date.now();
    producing = false;
    await killer;
    const gotA = await consumingA;
    console.log(`produced ${acked.count} in ${(produceMs / 1000).toFixed(1)} s (${((acked.count / produceMs) * 1000).toFixed(0)} msg/s) across ${kills.length} leader kills`);
    expect(kills).toHaveLength(2);
    // Both kills landed while messages were still being produced.
    for (const k of kills) expect(k.at).toBeLessThan(producedUntil);
    expect(acked.count).toBeGreaterThanOrEqual(opts.messages * 0.99);
    verifyConsumption(acked, gotA, 'consumer A (during the kills)');

    // Consumer B: half now, then every broker restarts, then the rest from the replicated offsets.
    const half = Math.floor(acked.count / 2);
    const firstHalf = await consume(consumerB, () => true, half);
    expect(firstHalf).toHaveLength(half);
    const sizeBefore = await consumerB.size();
    const brokers = (await statusDoc(base, env)).nodes.filter((n) => n.role === 'broker').map((n) => n.name);
    ok(await dvote([...base, 'kill', ...brokers, '--restart-after', '1s'], env));
    await waitForLeaders(base, env, opts.topic, 3, 60_000);
    const resumed = await Consumer.resume(client, consumerB.consumerId);
    expect(await resumed.size()).toBe(sizeBefore);
    const secondHalf = await consume(resumed, () => true);
    verifyConsumption(acked, [...firstHalf, ...secondHalf], 'consumer B (across a restart of every broker)');
    expect(await resumed.size()).toBe(0);
  } finally {
    await client.close();
  }
}
