// The 'shard' role: the stateless shard service in front of one shard's
// PostgreSQL primary. It follows the shard's record and the topology in the
// managers (ballot, voter id range, shard map, who is primary at which
// epoch), keeps a pool of connections to the primary, and takes votes over
// HTTP (vote-routes.ts) through the group-commit batcher and the shard's
// replication path. Everything durable lives in PostgreSQL (and, in part B,
// the vote log), so a restarted service loses nothing.
import Fastify, { type FastifyInstance } from 'fastify';
import { ShardDirectory, type ShardsSnapshot } from '../../client/shard-directory.js';
import { ShardRouter } from '../../core/shard-map.js';
import type { ShardRecord } from '../../core/shard-records.js';
import type { Topology } from '../../core/topology.js';
import type { VoteRules } from '../../core/vote-validation.js';
import { HeartbeatSender } from '../common/heartbeat-sender.js';
import type { Logger } from '../common/logger.js';
import type { NodeConfig } from '../common/node-config.js';
import { PrimaryConnection } from './primary-connection.js';
import { createReplicationPath, type ReplicationPath } from './replication-path.js';
import { parseShardSettings, type ShardSettings } from './shard-settings.js';
import { ShardMetrics } from './shard-metrics.js';
import { VoteBatcher, type PendingVote, type VoteOutcome } from './vote-batcher.js';
import { FencedError, VoteStore } from './vote-store.js';
import { registerVoteRoutes, MAX_BATCH_BODY_BYTES } from './vote-routes.js';

const PROBE_EVERY_MS = 1_000;
const PROBE_STALE_MS = 3_000;

/** What the service needs from the managers before it can take votes. */
export interface ShardView {
  topology: Topology;
  record: ShardRecord;
  rules: VoteRules;
  router: ShardRouter;
}

export class ShardNode {
  readonly settings: ShardSettings;
  readonly app: FastifyInstance;
  readonly directory: ShardDirectory;
  readonly primary: PrimaryConnection;
  readonly batcher: VoteBatcher;
  readonly metrics: ShardMetrics;
  store!: VoteStore;
  path!: ReplicationPath;
  private readonly heartbeat: HeartbeatSender;
  private current: ShardView | null = null;
  private waitingFor = 'the shard record and topology from the managers';
  private switchChain: Promise<void> = Promise.resolve();
  private probeTimer: NodeJS.Timeout | null = null;
  readonly startedAt = Date.now();

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    this.settings = parseShardSettings(config.settings);
    const maxInFlight = this.settings.maxInFlight ?? 4;
    this.app = Fastify({ logger: false, bodyLimit: MAX_BATCH_BODY_BYTES });
    this.directory = new ShardDirectory({ managers: config.managers.map((m) => m.http), pollMs: 500 });
    this.primary = new PrimaryConnection(log, config.id, maxInFlight + 4);
    this.batcher = new VoteBatcher((batch) => this.commit(batch), {
      maxInFlight,
      ...(this.settings.maxBatch ? { maxBatch: this.settings.maxBatch } : {}),
      ...(this.settings.maxQueued ? { maxQueued: this.settings.maxQueued } : {}),
    });
    this.metrics = new ShardMetrics(config.id, this.settings.shard, () => this.batcher.stats(), () => this.current?.record.epoch ?? 0);
    this.batcher.onBatch = (size, ms) => {
      this.metrics.batchSize.observe(size);
      this.metrics.commitSeconds.observe(ms / 1000);
    };
    this.heartbeat = new HeartbeatSender(config, log, () => this.heartbeatInfo());
  }

  get shard(): number {
    return this.settings.shard;
  }

  /** The view votes are checked against, or null while the service is waiting for it. */
  view(): ShardView | null {
    return this.current;
  }

  async start(): Promise<void> {
    registerVoteRoutes(this);
    await this.app.listen({ host: this.config.listen.host, port: this.config.listen.httpPort });
    this.heartbeat.start();
    this.directory.watch((snap) => this.onSnapshot(snap));
    this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.probeTimer.unref();
    this.log.info({ shard: this.shard, replication: this.settings.replication, http: this.config.advertise.http }, 'shard service started');
  }

  async stop(): Promise<void> {
    if (this.probeTimer) clearInterval(this.probeTimer);
    await this.app.close().catch(() => undefined);
    this.batcher.pause();
    await this.batcher.idle();
    await this.path?.stop();
    await this.directory.stop();
    await this.heartbeat.stop();
    await this.primary.close();
  }

  submit(vote: PendingVote): Promise<VoteOutcome> {
    return this.batcher.submit(vote);
  }

  private async commit(batch: PendingVote[]): Promise<VoteOutcome[]> {
    const target = this.primary.require();
    try {
      return await this.path.commit(batch, target);
    } catch (e) {
      // Our epoch or primary may be old: look again now rather than at the next poll.
      if (e instanceof FencedError) void this.directory.refresh().catch(() => undefined);
      throw e;
    }
  }

  private onSnapshot(snap: ShardsSnapshot): void {
    const record = snap.shards.find((r) => r.shard === this.shard) ?? null;
    if (!snap.topology || !snap.shardMap || !record) {
      this.waitingFor = !snap.topology ? 'the topology in the managers' : !snap.shardMap ? 'the shard map in the managers' : `the record of shard ${this.shard} in the managers`;
      return;
    }
    let router: ShardRouter;
    try {
      router = new ShardRouter(snap.shardMap);
    } catch (e) {
      this.waitingFor = `a valid shard map (${(e as Error).message})`;
      return;
    }
    const t = snap.topology;
    if (!this.store) {
      // The outbox feeds the vote log's relay; without brokers there is no log to feed.
      this.store = new VoteStore({ outbox: t.brokers > 0 });
      this.path = createReplicationPath(this.settings.replication, { store: this.store });
      void this.path.start();
    }
    this.current = { topology: t, record, rules: { ballot: t.ballot, voterIds: t.voterIds }, router };
    this.switchChain = this.switchChain.then(() => this.followPrimary(record)).catch((e) => this.log.error({ err: (e as Error).message }, 'could not switch primary'));
  }

  /** Point the pool at the record's primary, between batches. */
  private async followPrimary(rec: ShardRecord): Promise<void> {
    const address = rec.members[rec.primary]?.pg;
    if (!address) {
      this.waitingFor = `the address of primary ${rec.primary} (missing from the shard record)`;
      return;
    }
    const cur = this.primary.current;
    if (cur && cur.node === rec.primary && cur.address === address && cur.epoch === rec.epoch) return;
    this.batcher.pause();
    try {
      await this.batcher.idle();
      await this.primary.switchTo(rec.primary, address, rec.epoch);
    } finally {
      this.batcher.resume();
    }
    await this.probe();
  }

  private probing: Promise<void> | null = null;

  private probe(): Promise<void> {
    this.probing ??= this.primary
      .probe()
      .then(() => undefined)
      .finally(() => (this.probing = null));
    return this.probing;
  }

  /** /health: a failing primary is probed again on the spot (at most ~1 s), so a recovered one shows at once. */
  async freshHealth(): Promise<Record<string, unknown> & { healthy: boolean }> {
    const p = this.primary.lastProbe;
    if (this.current && !p.ok && Date.now() - p.at > 200) {
      await Promise.race([this.probe(), new Promise((r) => setTimeout(r, 1_000).unref())]);
    }
    return this.health();
  }

  health(): Record<string, unknown> & { healthy: boolean } {
    const v = this.current;
    const p = this.primary.lastProbe;
    const fresh = Date.now() - p.at < PROBE_STALE_MS;
    const healthy = v !== null && p.ok && fresh;
    const reason = !v ? `waiting for ${this.waitingFor}` : !p.ok ? `primary not writable: ${p.reason ?? 'unknown'}` : !fresh ? 'primary not probed recently' : undefined;
    const stats = this.batcher.stats();
    return {
      healthy,
      id: this.config.id,
      role: 'shard',
      state: healthy ? 'serving' : v ? 'degraded' : 'waiting',
      shard: this.shard,
      epoch: v?.record.epoch ?? null,
      primary: v?.record.primary ?? null,
      replicas: v?.record.replicas ?? [],
      replication: this.path ? this.path.describe() : { mode: this.settings.replication },
      batcher: { ...stats, maxBatch: this.batcher.maxBatch, maxInFlight: this.batcher.maxInFlight, maxQueued: this.batcher.maxQueued },
      managers: this.directory.lastError ? { error: this.directory.lastError } : { ok: true },
      uptimeMs: Date.now() - this.startedAt,
      ...(reason ? { reason } : {}),
    };
  }

  private heartbeatInfo(): Record<string, unknown> {
    const s = this.batcher.stats();
    return {
      shard: this.shard,
      epoch: this.current?.record.epoch ?? null,
      primary: this.current?.record.primary ?? null,
      mode: this.settings.replication,
      pending: s.pending,
      votes: s.votes,
    };
  }
}
