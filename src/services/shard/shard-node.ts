// The 'shard' role: the stateless shard service in front of one shard's
// PostgreSQL primary. It follows the shard's record and the topology in the
// managers (ballot, voter id range, shard map, who is primary at which
// epoch), keeps a pool of connections to the primary, and takes votes over
// HTTP (vote-routes.ts) through the group-commit batcher and the shard's
// replication path (log-path.ts, async-path.ts, sync-direct-path.ts).
//
// Everything durable lives in PostgreSQL and in the vote log, so a restarted
// service loses nothing: what it acknowledged is on the primary and (log,
// sync) in the log; what an earlier process left in the primary's outbox is
// shipped when the new process attaches (outbox-relay.ts).
//
// A new primary or epoch in the record (failover): the path is detached at
// once (its batches in flight can no longer be acknowledged, its retries
// stop), the batcher pauses until batches in flight are done (at most a few
// seconds), the pool moves to the new primary, and the path attaches there
// (vote-log barrier, replay, outbox) while new votes wait for it in the
// queue (bounded: see replication-path.ts READY_WAIT_MS and the batcher's
// maxQueued).
import Fastify, { type FastifyInstance } from 'fastify';
import { BrokerClient } from '../../client/broker-client.js';
import { ShardDirectory, type ShardsSnapshot } from '../../client/shard-directory.js';
import { ShardRouter } from '../../core/shard-map.js';
import { partitionOf, type ShardRecord } from '../../core/shard-records.js';
import type { Topology } from '../../core/topology.js';
import type { VoteRules } from '../../core/vote-validation.js';
import { HeartbeatSender } from '../common/heartbeat-sender.js';
import type { Logger } from '../common/logger.js';
import type { NodeConfig } from '../common/node-config.js';
import { createReplicationPath } from './create-replication-path.js';
import { NoPrimaryError, PrimaryConnection } from './primary-connection.js';
import type { ReplicationPath } from './replication-path.js';
import { parseShardSettings, type ShardSettings } from './shard-settings.js';
import { ShardMetrics } from './shard-metrics.js';
import { VoteBatcher, type PendingVote, type VoteOutcome } from './vote-batcher.js';
import { FencedError, VoteStore } from './vote-store.js';
import { registerVoteRoutes, MAX_BATCH_BODY_BYTES } from './vote-routes.js';
import { sleep, VoteLogWriter } from './vote-log.js';

/**
 * Vote batches in flight per shard unless the topology's groupCommit says
 * otherwise. One: votes that arrive while a batch runs wait and go together
 * in the next, so every round (a primary transaction, a Raft entry fsynced on
 * three brokers, the wake-ups of every process on the way) carries more votes.
 * Measured side by side on the 2-core machine (docs/BENCHMARKS.md): 1,543 and
 * 1,609 votes/s at 128 in flight against 1,199 and 1,134 with four, p50 lower too.
 */
const DEFAULT_BATCHES_IN_FLIGHT = 1;
const PROBE_EVERY_MS = 1_000;
const PROBE_STALE_MS = 3_000;
/** How long a switch of primary waits for batches in flight before it goes on (they cannot be acknowledged anyway). */
const SWITCH_IDLE_WAIT_MS = 3_000;

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
  path: ReplicationPath | null = null;
  private writer: VoteLogWriter | null = null;
  private brokers: BrokerClient | null = null;
  private readonly heartbeat: HeartbeatSender;
  private current: ShardView | null = null;
  /** primary|address|epoch of the attachment wanted now. */
  private attachKey = '';
  private attachAbort: AbortController | null = null;
  private stopping = false;
  /** async: votes at risk reported when attachments ended (failovers), in total. */
  atRiskAtFailovers = 0;
  private waitingFor = 'the shard record and topology from the managers';
  private switchChain: Promise<void> = Promise.resolve();
  private probeTimer: NodeJS.Timeout | null = null;
  readonly startedAt = Date.now();

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    this.settings = parseShardSettings(config.settings);
    const maxInFlight = this.settings.maxInFlight ?? DEFAULT_BATCHES_IN_FLIGHT;
    this.app = Fastify({ logger: false, bodyLimit: MAX_BATCH_BODY_BYTES });
    this.directory = new ShardDirectory({ managers: config.managers.map((m) => m.http), pollMs: 500 });
    this.primary = new PrimaryConnection(log, config.id, maxInFlight + 4);
    this.batcher = new VoteBatcher((batch) => this.commit(batch), {
      maxInFlight,
      ...(this.settings.maxBatch ? { maxBatch: this.settings.maxBatch } : {}),
      ...(this.settings.maxQueued ? { maxQueued: this.settings.maxQueued } : {}),
    });
    this.metrics = new ShardMetrics(
      config.id,
      this.settings.shard,
      () => this.batcher.stats(),
      () => this.current?.record.epoch ?? 0,
      () => {
        const d = this.path?.describe();
        return { atRisk: d?.atRisk ?? 0, outbox: d?.outbox ?? null, ready: d?.ready ?? false };
      },
      () => this.store?.rechecked ?? 0,
    );
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
    this.stopping = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    await this.app.close().catch(() => undefined);
    this.batcher.pause();
    await Promise.race([this.batcher.idle(), sleep(SWITCH_IDLE_WAIT_MS)]);
    this.attachAbort?.abort();
    await this.path?.stop();
    await this.directory.stop();
    await this.heartbeat.stop();
    await this.primary.close();
    await this.brokers?.close().catch(() => undefined);
  }

  submit(vote: PendingVote): Promise<VoteOutcome> {
    return this.batcher.submit(vote);
  }

  private async commit(batch: PendingVote[]): Promise<VoteOutcome[]> {
    const target = this.primary.require();
    if (!this.path) throw new NoPrimaryError('the shard service has not read the topology yet');
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
    if (!this.path) {
      // Outbox rows feed the vote log; without brokers there is no log to feed.
      this.store = new VoteStore({ outbox: t.brokers > 0 });
      if (t.brokers > 0) {
        this.brokers = new BrokerClient({ managers: this.config.managers.map((m) => m.http), timeoutMs: 4_000, connections: 8 });
        this.writer = new VoteLogWriter(this.brokers, partitionOf(this.shard), t.shards, this.config.id, this.log);
      }
      try {
        this.path = createReplicationPath(this.settings.replication, {
          store: this.store,
          log: this.log,
          node: this.config.id,
          shard: this.shard,
          partition: partitionOf(this.shard),
          writer: this.writer,
          onAttachmentEnded: (info) => this.attachmentEnded(info),
          observeStep: (step, seconds) => this.metrics.stepSeconds.observe({ step }, seconds),
        });
      } catch (e) {
        this.waitingFor = `a usable replication mode (${(e as Error).message})`;
        return;
      }
      void this.path.start();
    }
    this.current = { topology: t, record, rules: { ballot: t.ballot, voterIds: t.voterIds }, router };
    const address = record.members[record.primary]?.pg;
    if (!address) {
      this.waitingFor = `the address of primary ${record.primary} (missing from the shard record)`;
      return;
    }
    const key = `${record.primary}|${address}|${record.epoch}`;
    if (key === this.attachKey) {
      this.path.updateRecord(record);
      return;
    }
    // A new primary or epoch: from now on nothing of the old attachment may be acknowledged.
    this.attachKey = key;
    this.path.detach();
    this.attachAbort?.abort();
    const ctrl = new AbortController();
    this.attachAbort = ctrl;
    this.switchChain = this.switchChain
      .then(() => this.attach(record, address, ctrl.signal))
      .catch((e) => this.log.error({ err: (e as Error).message }, 'could not attach to the primary'));
  }

  private attachmentEnded(info: { epoch: number; primary: string; atRisk: number }): void {
    if (this.stopping || info.atRisk === 0) return;
    this.atRiskAtFailovers += info.atRisk;
    this.metrics.atRiskAtFailovers.inc(info.atRisk);
    this.log.warn(
      { primary: info.primary, epoch: info.epoch, atRisk: info.atRisk },
      'the attachment to the primary ended with acknowledged votes not yet in the vote log: they are lost if that primary\'s data is',
    );
  }

  /** Move the pool to the record's primary between batches, then attach the path there. */
  private async attach(rec: ShardRecord, address: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted || !this.path) return;
    this.batcher.pause();
    try {
      await Promise.race([this.batcher.idle(), sleep(SWITCH_IDLE_WAIT_MS, signal)]);
      await this.primary.switchTo(rec.primary, address, rec.epoch);
    } finally {
      this.batcher.resume();
    }
    void this.probe();
    const target = this.primary.current!;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        await this.path.attach({ target, record: rec, signal });
        return;
      } catch (e) {
        this.log.warn({ err: (e as Error).message, primary: rec.primary, epoch: rec.epoch }, 'attaching to the primary failed; retrying');
        await sleep(Math.min(200 * (attempt + 1), 2_000), signal);
      }
    }
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
    const replication = this.path?.describe();
    const ready = replication?.ready ?? false;
    const healthy = v !== null && p.ok && fresh && ready;
    const reason = !v
      ? `waiting for ${this.waitingFor}`
      : !p.ok
        ? `primary not writable: ${p.reason ?? 'unknown'}`
        : !fresh
          ? 'primary not probed recently'
          : !ready
            ? `replication not ready: waiting for ${replication?.waitingFor ?? 'the primary'}`
            : undefined;
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
      replication: replication ?? { mode: this.settings.replication },
      atRisk: replication?.atRisk ?? 0,
      atRiskAtFailovers: this.atRiskAtFailovers,
      batcher: { ...stats, maxBatch: this.batcher.maxBatch, maxInFlight: this.batcher.maxInFlight, maxQueued: this.batcher.maxQueued },
      managers: this.directory.lastError ? { error: this.directory.lastError } : { ok: true },
      uptimeMs: Date.now() - this.startedAt,
      ...(reason ? { reason } : {}),
    };
  }

  private heartbeatInfo(): Record<string, unknown> {
    const s = this.batcher.stats();
    const d = this.path?.describe();
    return {
      shard: this.shard,
      epoch: this.current?.record.epoch ?? null,
      primary: this.current?.record.primary ?? null,
      mode: this.settings.replication,
      pending: s.pending,
      votes: s.votes,
      ready: d?.ready ?? false,
      atRisk: d?.atRisk ?? 0,
      outbox: d?.outbox ?? null,
    };
  }
}
