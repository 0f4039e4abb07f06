// Prometheus metrics of a shard service (prom-client), one registry per node.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.js';
import type { BatcherStats } from './vote-batcher.js';

export class ShardMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly votes: Counter<'result'>;
  readonly batchSize: Histogram;
  readonly commitSeconds: Histogram;
  readonly voteSeconds: Histogram;
  readonly atRiskAtFailovers: Counter;
  readonly stepSeconds: Histogram<'step'>;

  constructor(
    node: string,
    shard: number,
    stats: () => BatcherStats,
    epoch: () => number,
    replication: () => { atRisk: number; outbox: number | null; ready: boolean } = () => ({ atRisk: 0, outbox: null, ready: false }),
    rechecked: () => number = () => 0,
  ) {
    const r = this.registry;
    r.setDefaultLabels({ node, role: 'shard', shard: String(shard) });
    collectProcessMetrics(r);
    this.requests = new Counter({
      name: 'dvote_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [r],
    });
    this.votes = new Counter({
      name: 'dvote_votes_total',
      help: 'Votes by result: accepted, duplicate (already voted), rejected (bad input), failed (not stored: retry)',
      labelNames: ['result'],
      registers: [r],
    });
    this.batchSize = new Histogram({
      name: 'dvote_vote_batch_size',
      help: 'Votes per group-commit batch',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
      registers: [r],
    });
    this.commitSeconds = new Histogram({
      name: 'dvote_vote_commit_seconds',
      help: 'Time to make one batch durable (the replication mode included)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [r],
    });
    this.stepSeconds = new Histogram({
      name: 'dvote_vote_step_seconds',
      help: 'Time of each step of a batch: primary (commit on the primary), log (append to the vote log), replicas (sync: every replica applied)',
      labelNames: ['step'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [r],
    });
    this.voteSeconds = new Histogram({
      name: 'dvote_vote_seconds',
      help: 'Time from a vote reaching the service to its answer (queueing included)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [r],
    });
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(value());
        },
      });
    gauge('dvote_vote_pending', 'Votes waiting or being committed', () => stats().pending);
    gauge('dvote_vote_batches_in_flight', 'Batches being committed', () => stats().inFlight);
    gauge('dvote_shard_epoch', 'Epoch of the primary this service writes to', epoch);
    gauge('dvote_votes_at_risk', 'async mode: votes acknowledged on the primary and not yet in the vote log (lost if the primary\'s disk is)', () => replication().atRisk);
    gauge('dvote_outbox_rows', 'Votes in the primary\'s outbox at the last count (the outbox keeps one row per batch)', () => replication().outbox ?? 0);
    new Counter({
      name: 'dvote_vote_rechecked_total',
      help: 'Votes read again after their batch: a row committed after the batch\'s snapshot (the primary\'s applier, from the log) conflicted',
      registers: [r],
      collect() {
        this.reset();
        this.inc(rechecked());
      },
    });
    gauge('dvote_replication_ready', '1 while the replication path is attached to the primary and takes votes', () => (replication().ready ? 1 : 0));
    this.atRiskAtFailovers = new Counter({
      name: 'dvote_votes_at_risk_at_failover_total',
      help: 'async mode: votes that were at risk when the service left a primary (failover): lost unless that primary comes back with its data',
      registers: [r],
    });
  }
}
