// Prometheus metrics of a broker (/metrics), read by `dvote report`.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.js';
import type { BrokerNode } from './broker-node.js';

export class BrokerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly appendedMessages: Counter;
  readonly appendedBytes: Counter;
  readonly fetchedMessages: Counter;
  readonly appendSeconds: Histogram;

  constructor(node: BrokerNode) {
    const r = this.registry;
    collectProcessMetrics(r);
    this.requests = new Counter({ name: 'dvote_broker_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'method', 'status'], registers: [r] });
    this.appendedMessages = new Counter({ name: 'dvote_broker_appended_messages_total', help: 'messages committed by appends this broker led', registers: [r] });
    this.appendedBytes = new Counter({ name: 'dvote_broker_appended_bytes_total', help: 'message bytes committed by appends this broker led', registers: [r] });
    this.fetchedMessages = new Counter({ name: 'dvote_broker_fetched_messages_total', help: 'messages served by fetch and dequeue', registers: [r] });
    this.appendSeconds = new Histogram({
      name: 'dvote_broker_append_seconds',
      help: 'append latency from request to commit',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    });
    new Gauge({
      name: 'dvote_broker_partitions',
      help: 'partition replicas hosted, by Raft role',
      labelNames: ['role'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of node.replicas()) this.inc({ role: p.group.status().role });
      },
    });
    new Gauge({
      name: 'dvote_broker_partition_high_watermark',
      help: 'messages stored per partition replica',
      labelNames: ['topic', 'partition'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of node.replicas()) this.set({ topic: p.topic, partition: String(p.partition) }, p.highWatermark);
      },
    });
    new Gauge({
      name: 'dvote_raft_fsyncs',
      help: 'fsyncs of the Raft logs of every hosted partition',
      registers: [r],
      collect() {
        let n = 0;
        for (const p of node.replicas()) n += p.group.counters.fsyncs;
        this.set(n);
      },
    });
  }
}
