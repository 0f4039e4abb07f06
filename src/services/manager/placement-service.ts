// Re-replication, as the manager leader runs it: a broker that has been dead
// (by the failure detector's committed record) for longer than the
// replace-after time loses its replicas to live brokers, chosen by
// planReplacements (least loaded, never two replicas on one broker). Only the
// desired placement changes here, in one compare-and-set transaction per
// round; each partition's Raft leader then moves the group there itself
// (addLearner -> caught up -> addVoter -> removeNode), so RF is kept without
// the managers touching any partition data.
//
// The replace-after time: /dvote/config/broker-replace-after-ms in the KV
// store (settable at run time through the KV API), else the manager setting
// brokerReplaceAfterMs, else 10 s.
import { planReplacements } from '../../core/placement.js';
import { BROKER_KEYS, type TopicRecord } from '../broker/placement-records.js';
import type { ManagerNode } from './manager-node.js';
import { readBrokers, readTopics } from './topic-routes.js';

export const DEFAULT_REPLACE_AFTER_MS = 10_000;

export class PlacementService {
  private timer: NodeJS.Timeout | null = null;
  private generation = 0;
  private busy = false;

  constructor(private readonly node: ManagerNode) {}

  onLeaderChange(leader: string | null): void {
    const gen = ++this.generation;
    this.stop();
    if (leader !== this.node.config.id) return;
    void this.node.group
      .readBarrier(10_000)
      .then(() => {
        if (gen !== this.generation || !this.node.group.isLeader) return;
        this.timer = setInterval(() => void this.round(), 1_000);
        this.timer.unref();
      })
      .catch(() => {
        /* lost leadership meanwhile */
      });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  replaceAfterMs(): number {
    const kv = this.node.state.kv.get(BROKER_KEYS.replaceAfter)?.value;
    const fromKv = kv !== undefined ? Number(kv) : NaN;
    if (Number.isFinite(fromKv) && fromKv >= 0) return fromKv;
    const setting = Number(this.node.config.settings?.brokerReplaceAfterMs);
    if (Number.isFinite(setting) && setting >= 0) return setting;
    return DEFAULT_REPLACE_AFTER_MS;
  }

  /** One pass: replace replicas on brokers dead for too long. Exposed for tests. */
  async round(now = Date.now()): Promise<number> {
    if (this.busy || !this.node.group.isLeader || !this.node.liveness.active) return 0;
    this.busy = true;
    try {
      const records = new Map(this.node.liveness.records().map((r) => [r.id, r]));
      const brokers = readBrokers(this.node).map((b) => b.id);
      const after = this.replaceAfterMs();
      const gone = brokers.filter((b) => {
        const r = records.get(b);
        return r?.state === 'dead' && now - Date.parse(r.since) >= after;
      });
      if (gone.length === 0) return 0;
      const live = brokers.filter((b) => records.get(b)?.state !== 'dead');
      const topics = readTopics(this.node);
      const affected = topics.filter((t) => t.partitions.some((p) => p.replicas.some((r) => gone.includes(r))));
      if (affected.length === 0) return 0;
      const plan = planReplacements({ topics: affected.map((t) => ({ name: t.name, partitions: t.partitions })), live, gone });
      if (plan.replacements.length === 0) return 0;
      const compare: { key: string; value: string | null }[] = [];
      const success: { op: 'put'; key: string; value: string }[] = [];
      for (const t of affected) {
        const planned = plan.topics.find((x) => x.name === t.name)!;
        const updated: TopicRecord = {
          ...t,
          partitions: t.partitions.map((p) => {
            const replicas = planned.partitions.find((x) => x.partition === p.partition)!.replicas;
            // A replaced broker must never bootstrap this group again.
            return { ...p, replicas, bootstrap: p.bootstrap.filter((b) => replicas.includes(b)) };
          }),
        };
        compare.push({ key: BROKER_KEYS.topic(t.name), value: this.node.state.kv.get(BROKER_KEYS.topic(t.name))!.value });
        success.push({ op: 'put', key: BROKER_KEYS.topic(t.name), value: JSON.stringify(updated) });
      }
      const r = await this.node.proposeLocal({ op: 'txn', compare, success });
      if (r.op === 'txn' && r.succeeded) {
        this.node.log.info(
          { gone, replacements: plan.replacements.map((x) => `${x.topic}/${x.partition}: ${x.removed} -> ${x.added}`), underReplicated: plan.underReplicated },
          're-replicating partitions of dead brokers',
        );
        return plan.replacements.length;
      }
      return 0;
    } catch (e) {
      this.node.log.warn({ err: String(e) }, 're-replication round failed; will retry');
      return 0;
    } finally {
      this.busy = false;
    }
  }
}
