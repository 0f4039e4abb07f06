// A producer of one topic (the original API's registered producer). It
// batches: messages sent within `lingerMs` of each other (or up to
// `maxBatch`) to the same partition travel as one append, one Raft entry,
// and each send resolves with its own offset once the batch is committed.
// Every batch carries (producerId, seq) with a fresh seq, and a retried
// batch reuses its seq, so the partition stores it once (idempotent
// producer). Partitions are chosen round-robin unless the producer was
// registered to one partition or a send names one.
import type { BrokerClient, TopicInfo } from './broker-client.js';

export interface ProducerOptions {
  /** Produce to this partition only (the original "register to one partition"). */
  partition?: number;
  /** Wait this long for more messages before sending a batch (default 1 ms; 0 = next tick). */
  lingerMs?: number;
  /** Send a batch once it holds this many messages (default 500). */
  maxBatch?: number;
  /** Batches in flight per partition (default 4); order across batches of one partition follows their offsets. */
  maxInFlight?: number;
}

interface Pending {
  values: Uint8Array[];
  waiters: { resolve: (offset: number) => void; reject: (e: Error) => void; index: number }[];
  timer: NodeJS.Timeout | null;
}

const enc = new TextEncoder();

export class Producer {
  private rr = 0;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly inFlight = new Map<number, number>();
  private readonly queued = new Map<number, (() => void)[]>();
  private readonly outstanding = new Set<Promise<void>>();

  private constructor(
    private readonly client: BrokerClient,
    readonly topic: string,
    readonly producerId: string,
    private readonly info: TopicInfo,
    private readonly opts: ProducerOptions,
  ) {}

  /** Register a producer with the managers (the topic must exist). */
  static async register(client: BrokerClient, topic: string, opts: ProducerOptions = {}): Promise<Producer> {
    const r = await client.registerProducer(topic, opts.partition !== undefined ? { partition: opts.partition } : {});
    const info = await client.topic(topic);
    return new Producer(client, topic, r.producerId, info, opts);
  }

  get partitions(): number {
    return this.info.partitions.length;
  }

  /** Enqueue one message; resolves with its partition and offset once committed. */
  async send(message: string | Uint8Array, opts: { partition?: number } = {}): Promise<{ partition: number; offset: number }> {
    const partition = opts.partition ?? this.opts.partition ?? this.rr++ % this.info.partitions.length;
    const value = typeof message === 'string' ? enc.encode(message) : message;
    let p = this.pending.get(partition);
    if (!p) {
      p = { values: [], waiters: [], timer: null };
      this.pending.set(partition, p);
    }
    const batch = p;
    const offset = new Promise<number>((resolve, reject) => batch.waiters.push({ resolve, reject, index: batch.values.length }));
    batch.values.push(value);
    if (batch.values.length >= (this.opts.maxBatch ?? 500)) this.flushPartition(partition);
    else if (!batch.timer) {
      const linger = this.opts.lingerMs ?? 1;
      batch.timer = linger > 0 ? setTimeout(() => this.flushPartition(partition), linger) : (setImmediate(() => this.flushPartition(partition)) as unknown as NodeJS.Timeout);
    }
    return { partition, offset: await offset };
  }

  /** Append a whole batch at once (no lingering); resolves with its offsets. */
  async sendBatch(values: (string | Uint8Array)[], partition: number): Promise<{ firstOffset: number; lastOffset: number }> {
    return this.client.append(this.topic, partition, values.map((v) => (typeof v === 'string' ? enc.encode(v) : v)), { producerId: this.producerId, seq: this.seq++ });
  }

  /** Send every lingering batch now and wait until every batch sent so far has finished. */
  async flush(): Promise<void> {
    for (const partition of [...this.pending.keys()]) this.flushPartition(partition);
    while (this.outstanding.size > 0) await Promise.allSettled([...this.outstanding]);
  }

  private flushPartition(partition: number): void {
    const p = this.pending.get(partition);
    if (!p || p.values.length === 0) return;
    this.pending.delete(partition);
    if (p.timer) clearTimeout(p.timer);
    const seq = this.seq++;
    const run = async () => {
      this.inFlight.set(partition, (this.inFlight.get(partition) ?? 0) + 1);
      try {
        const r = await this.client.append(this.topic, partition, p.values, { producerId: this.producerId, seq });
        for (const w of p.waiters) w.resolve(r.firstOffset + w.index);
      } catch (e) {
        for (const w of p.waiters) w.reject(e as Error);
      } finally {
        this.inFlight.set(partition, (this.inFlight.get(partition) ?? 1) - 1);
        this.queued.get(partition)?.shift()?.();
      }
    };
    const done = new Promise<void>((resolve) => {
      const go = () => void run().finally(resolve);
      if ((this.inFlight.get(partition) ?? 0) < (this.opts.maxInFlight ?? 4)) go();
      else {
        const q = this.queued.get(partition) ?? [];
        q.push(go);
        this.queued.set(partition, q);
      }
    });
    this.outstanding.add(done);
    void done.then(() => this.outstanding.delete(done));
  }
}
