// A consumer (the original API's registered consumer): its offsets live in
// the partitions' replicated state, so they survive broker restarts and a
// consumer can resume from another process with the same id.
//
// - Registered to one partition: dequeue reads that partition.
// - Registered to a whole topic: it has an offset on every partition and its
//   j-th dequeue starts at partition (i + j) mod n (i = its registration
//   index, the original design's round robin), moving on to the next
//   partition while one is empty.
// - In a consumer group: members share one offset per partition
//   ("group:<name>") and split the partitions round-robin; the assignment is
//   re-read when the group's generation changes.
// Each dequeue carries a request id reused by its retries, so a dequeue
// whose reply was lost returns the same messages on retry (exactly once per
// consumer), unless the whole call gives up with BrokerUnavailableError.
import { randomUUID } from 'node:crypto';
import { dequeueOrder } from '../core/placement.js';
import type { BrokerClient } from './broker-client.js';

export interface ConsumedMessage {
  partition: number;
  offset: number;
  value: Uint8Array;
}

export class Consumer {
  private j = 0;

  private constructor(
    private readonly client: BrokerClient,
    readonly topic: string,
    /** The id offsets are kept under on the partitions. */
    readonly consumerId: string,
    private partitions: number[],
    private readonly index: number,
    private readonly groupInfo: { group: string; member: string; generation: number } | null,
  ) {}

  /** Register a new consumer of the whole topic, or of one partition. */
  static async register(client: BrokerClient, topic: string, opts: { partition?: number; from?: 'earliest' | 'latest' } = {}): Promise<Consumer> {
    const r = await client.registerTopicConsumer(topic, opts);
    return new Consumer(client, topic, r.consumerId, r.partitions, r.index, null);
  }

  /** Resume an existing consumer by id (its offsets are where it left them). */
  static async resume(client: BrokerClient, consumerId: string): Promise<Consumer> {
    const r = await client.consumerRecord(consumerId);
    return new Consumer(client, r.topic, r.id, r.partitions, r.index, null);
  }

  /** Join (or rejoin) a consumer group as `member`. */
  static async joinGroup(client: BrokerClient, topic: string, group: string, member?: string): Promise<Consumer> {
    const r = await client.joinGroup(topic, group, member);
    return new Consumer(client, topic, r.consumer, r.partitions, 0, { group, member: r.member, generation: r.generation });
  }

  get assignedPartitions(): number[] {
    return [...this.partitions];
  }

  get member(): string | null {
    return this.groupInfo?.member ?? null;
  }

  /** Re-read the group's assignment (members joined or left). */
  async refreshAssignment(): Promise<void> {
    if (!this.groupInfo) return;
    const g = await this.client.group(this.topic, this.groupInfo.group);
    this.partitions = g.assignment[this.groupInfo.member] ?? [];
    this.groupInfo.generation = g.generation;
  }

  /** Up to `max` messages from one partition (round robin over the assigned ones); [] when all are empty. */
  async dequeue(max = 1): Promise<ConsumedMessage[]> {
    if (this.partitions.length === 0) return [];
    const order = dequeueOrder(this.index, this.j++, this.partitions.length).map((k) => this.partitions[k]!);
    for (const partition of order) {
      const r = await this.client.dequeue(this.topic, partition, this.consumerId, { max, rid: randomUUID() });
      if (r.messages.length > 0) return r.messages.map((m) => ({ partition, offset: m.offset, value: m.value }));
    }
    return [];
  }

  /** Messages left for this consumer over its partitions. */
  async size(): Promise<number> {
    const sizes = await Promise.all(this.partitions.map((p) => this.client.size(this.topic, p, this.consumerId)));
    return sizes.reduce((n, s) => n + s.size, 0);
  }

  /** Leave the group (members only). */
  async close(): Promise<void> {
    if (this.groupInfo) await this.client.leaveGroup(this.topic, this.groupInfo.group, this.groupInfo.member);
  }
}
