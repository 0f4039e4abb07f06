// A broker: hosts partition replicas, each its own Raft group over the
// partition's replicas (multi-Raft: every group of the process shares one
// RaftHost and its one TCP transport). Persistence is each group's Raft log
// on disk (fsynced before a write is acknowledged); a restarted broker
// recovers its groups from disk and catches up from the other replicas.
//
// Life cycle: register with the managers (service discovery: id, HTTP and
// Raft addresses), heartbeat to them (with a report of every hosted
// partition, from which the managers learn the leaders), and poll the
// placement every placementPollMs: start the groups this broker should host
// (the initial replicas bootstrap the group with identical voters; later
// replicas join empty and are added by the leader), retire the ones it was
// removed from, and, where it leads, move the group's membership towards the
// desired replica set (see partition-replica.ts).
//
// HTTP API (see broker-routes.ts for the details).
import { existsSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { ManagerClient } from '../../client/manager-client.js';
import { RaftHost } from '../../raft/host/raft-host.js';
import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { HeartbeatSender } from '../common/heartbeat-sender.js';
import { BrokerMetrics } from './broker-metrics.js';
import { registerBrokerRoutes } from './broker-routes.js';
import { PartitionReplica } from './partition-replica.js';
import { MAX_BATCH_BYTES, type BrokerRecord, type PlacementDoc, type TopicRecord } from './placement-records.js';

export interface BrokerSettings {
  placementPollMs: number;
  /** Snapshot a partition's state after this many applied entries (Raft host default when unset). */
  snapshotEntries?: number;
  /** Entries kept behind a snapshot for slow followers (Raft host default when unset). */
  keepEntries?: number;
}

/**
 * From the node settings; snapshotEntries/keepEntries may also come from
 * DVOTE_BROKER_SNAPSHOT_ENTRIES / DVOTE_BROKER_KEEP_ENTRIES (tests force
 * frequent snapshots with them).
 */
function settingsOf(config: NodeConfig): BrokerSettings {
  const s = config.settings ?? {};
  const poll = Number(s.placementPollMs);
  const positive = (v: unknown) => {
    const n = Number(v);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  };
  const snapshotEntries = positive(s.snapshotEntries ?? process.env.DVOTE_BROKER_SNAPSHOT_ENTRIES);
  const keepEntries = positive(s.keepEntries ?? process.env.DVOTE_BROKER_KEEP_ENTRIES);
  return {
    placementPollMs: Number.isInteger(poll) && poll >= 20 ? poll : 300,
    ...(snapshotEntries ? { snapshotEntries } : {}),
    ...(keepEntries ? { keepEntries } : {}),
  };
}

export class BrokerNode {
  readonly host: RaftHost;
  readonly app: FastifyInstance;
  readonly metrics: BrokerMetrics;
  readonly managers: ManagerClient;
  readonly settings: BrokerSettings;
  readonly startedAt = Date.now();
  private readonly partitions = new Map<string, PartitionReplica>();
  private placement: PlacementDoc | null = null;
  private brokers = new Map<string, BrokerRecord>();
  private heartbeats: HeartbeatSender;
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private stopped = false;
  registered = false;

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    if (!config.advertise.raft) throw new Error('a broker needs advertise.raft (its Raft transport address)');
    this.settings = settingsOf(config);
    this.host = new RaftHost({ nodeId: config.id, listen: { host: config.listen.host, port: config.listen.raftPort ?? 0 }, logger: log });
    // Twice the batch limit, so a too-large batch is read and answered 413 with a reason instead of cut off.
    this.app = Fastify({ logger: false, bodyLimit: 2 * MAX_BATCH_BYTES + 64 * 1024 });
    this.metrics = new BrokerMetrics(this);
    this.managers = new ManagerClient({ endpoints: config.managers.map((m) => m.http), timeoutMs: 5_000, attemptTimeoutMs: 1_500, connections: 2 });
    this.heartbeats = new HeartbeatSender(config, log, () => ({ partitions: this.replicas().map((p) => p.report()) }));
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    await this.host.start();
    registerBrokerRoutes(this);
    await this.app.listen({ host: this.config.listen.host, port: this.config.listen.httpPort });
    void this.registerLoop();
    this.heartbeats.start();
    this.pollTimer = setInterval(() => void this.poll(), this.settings.placementPollMs);
    this.pollTimer.unref();
    void this.poll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.heartbeats.stop();
    for (const p of this.partitions.values()) p.wakeAll();
    await this.app.close();
    await this.host.stop();
    await this.managers.close();
  }

  get httpPort(): number {
    const a = this.app.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  replicas(): PartitionReplica[] {
    return [...this.partitions.values()];
  }

  replica(topic: string, partition: number): PartitionReplica | undefined {
    return this.partitions.get(`${topic}/${partition}`);
  }

  topicRecord(topic: string): TopicRecord | undefined {
    return this.placement?.topics.find((t) => t.name === topic);
  }

  brokerHttp(id: string | null): string | null {
    return id ? (this.brokers.get(id)?.http ?? null) : null;
  }

  private async registerLoop(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.managers.request('POST', '/v1/brokers/register', { id: this.id, http: this.config.advertise.http, raft: this.config.advertise.raft });
        this.registered = true;
        this.log.info({ http: this.config.advertise.http, raft: this.config.advertise.raft }, 'registered with the managers');
        return;
      } catch (e) {
        if (attempt % 10 === 0) this.log.warn({ err: (e as Error).message }, 'could not register with the managers yet; retrying');
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  /** Fetch the placement now (linearizable) and apply it; used when a request names a topic this broker has not heard of. */
  async refreshPlacement(): Promise<void> {
    try {
      const r = await this.managers.request('GET', '/v1/placement');
      this.applyPlacement(r.body as unknown as PlacementDoc);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not read the placement from the managers');
    }
  }

  private async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      const r = await this.managers.request('GET', '/v1/placement?stale=true');
      const doc = r.body as unknown as PlacementDoc;
      // A stale follower could be behind what we already applied.
      if (!this.placement || doc.revision >= this.placement.revision) this.applyPlacement(doc);
      await this.reconcileLeaders();
    } catch (e) {
      this.log.debug?.({ err: (e as Error).message }, 'placement poll failed');
    } finally {
      this.polling = false;
    }
  }

  private applyPlacement(doc: PlacementDoc): void {
    if (this.stopped) return;
    this.placement = doc;
    this.brokers = new Map(doc.brokers.map((b) => [b.id, b]));
    for (const b of doc.brokers) if (b.id !== this.id) this.host.setPeerAddress(b.id, b.raft);
    for (const t of doc.topics) {
      for (const p of t.partitions) {
        const key = `${t.name}/${p.partition}`;
        const hosted = this.partitions.get(key);
        const wanted = p.replicas.includes(this.id);
        if (!hosted && wanted) this.startReplica(t.name, p.partition, p.bootstrap.includes(this.id) ? p.bootstrapVoters : null);
        if (hosted && !wanted && !hosted.group.isLeader) {
          const conf = hosted.group.status().conf;
          // Still a member: keep serving until the leader removes us (it will, after adding the replacement).
          if (!conf.voters.includes(this.id) && !conf.learners.includes(this.id) && hosted.group.leader !== null) this.retire(key);
        }
      }
    }
  }

  private dirOf(topic: string, partition: number): string {
    return join(this.config.dataDir, 'partitions', topic, String(partition));
  }

  private startReplica(topic: string, partition: number, bootstrapVoters: string[] | null): void {
    const dir = this.dirOf(topic, partition);
    const hasData = existsSync(dir) && readdirSync(dir).length > 0;
    let bootstrap: { voters: string[]; addresses: Record<string, string> } | undefined;
    if (bootstrapVoters && !hasData) {
      const addresses: Record<string, string> = {};
      for (const v of bootstrapVoters) {
        const a = v === this.id ? this.config.advertise.raft! : this.brokers.get(v)?.raft;
        if (!a) return; // wait until every initial replica has registered
        addresses[v] = a;
      }
      bootstrap = { voters: bootstrapVoters, addresses };
    }
    const key = `${topic}/${partition}`;
    try {
      const replica = new PartitionReplica(topic, partition, this.host, {
        dir,
        ...(bootstrap ? { bootstrap } : {}),
        ...(this.config.timing ? { timing: this.config.timing } : {}),
        ...(this.settings.snapshotEntries ? { snapshotEntries: this.settings.snapshotEntries } : {}),
        ...(this.settings.keepEntries ? { keepEntries: this.settings.keepEntries } : {}),
        log: this.log,
        onRemoved: () => this.retire(key),
      });
      this.partitions.set(key, replica);
      this.log.info({ partition: key, bootstrap: bootstrap?.voters ?? null, recovered: hasData }, 'hosting partition replica');
      // A new group's preferred leader stands at once, so leaders start balanced
      // (no transfer later); if its peers are not up yet a normal election follows.
      if (bootstrap && bootstrap.voters[0] === this.id) replica.group.campaign();
    } catch (e) {
      this.log.error({ partition: key, err: (e as Error).message }, 'could not start partition replica');
    }
  }

  /** Stop a replica this broker no longer holds and move its data aside (never reused: a later re-add starts empty). */
  private retire(key: string): void {
    const r = this.partitions.get(key);
    if (!r) return;
    this.partitions.delete(key);
    r.stop(this.host);
    const dir = this.dirOf(r.topic, r.partition);
    try {
      if (existsSync(dir)) renameSync(dir, `${dir}.retired-${Date.now()}`);
    } catch (e) {
      this.log.warn({ partition: key, err: (e as Error).message }, 'could not move a retired replica aside');
    }
    this.log.info({ partition: key }, 'retired partition replica');
  }

  private async reconcileLeaders(): Promise<void> {
    if (!this.placement) return;
    const raftAddress = (id: string) => (id === this.id ? this.config.advertise.raft : this.brokers.get(id)?.raft);
    await Promise.all(
      this.placement.topics.flatMap((t) =>
        t.partitions.map(async (p) => {
          const r = this.partitions.get(`${t.name}/${p.partition}`);
          if (r && r.group.isLeader) await r.reconcile(p, raftAddress, this.log);
        }),
      ),
    );
  }

  health(): Record<string, unknown> & { healthy: boolean } {
    const partitions = this.replicas().map((p) => p.report());
    return {
      healthy: this.registered,
      id: this.id,
      role: 'broker',
      state: 'running',
      ...(this.registered ? {} : { reason: 'not registered with the managers yet' }),
      leader: null,
      term: null,
      commitIndex: null,
      leaderOf: partitions.filter((p) => p.role === 'leader').length,
      lag: partitions.reduce((m, p) => Math.max(m, p.lag), 0),
      partitions,
      uptimeMs: Date.now() - this.startedAt,
    };
  }
}
