// Prometheus metrics of a manager (prom-client), one registry per node.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.js';
import type { ManagerNode } from './manager-node.js';

export class ManagerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly forwarded: Counter;
  readonly writeSeconds: Histogram;

  constructor(node: ManagerNode) {
    const r = this.registry;
    r.setDefaultLabels({ node: node.config.id, role: 'manager' });
    collectProcessMetrics(r);
    this.requests = new Counter({
      name: 'dvote_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [r],
    });
    this.forwarded = new Counter({ name: 'dvote_manager_forwarded_total', help: 'Writes forwarded to the leader', registers: [r] });
    this.writeSeconds = new Histogram({
      name: 'dvote_manager_write_seconds',
      help: 'Latency of KV writes (commit through Raft)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [r],
    });
    const raftGauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(value());
        },
      });
    raftGauge('dvote_raft_term', 'Current Raft term', () => node.group.term);
    raftGauge('dvote_raft_commit_index', 'Raft commit index', () => node.group.commitIndex);
    raftGauge('dvote_raft_applied_index', 'Raft applied index', () => node.group.appliedIndex);
    raftGauge('dvote_raft_is_leader', '1 if this node is the Raft leader', () => (node.group.isLeader ? 1 : 0));
    raftGauge('dvote_raft_leader_changes', 'Leader changes seen by this node', () => node.group.counters.leaderChanges);
    raftGauge('dvote_raft_proposals', 'Proposals made on this node', () => node.group.counters.proposals);
    raftGauge('dvote_raft_fsyncs', 'fsync calls of the Raft log', () => node.group.counters.fsyncs);
    raftGauge('dvote_raft_snapshots', 'Snapshots taken', () => node.group.counters.snapshots);
    raftGauge('dvote_kv_keys', 'Keys in the replicated store', () => node.state.kv.size);
  }
}
