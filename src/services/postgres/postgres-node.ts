// The 'postgres' role: our node program supervising one PostgreSQL server of a
// shard. It makes and starts the server (pg-server.ts), creates the schema,
// follows the shard's record in the managers, beats to the managers (with
// its copy's state, applied offset and lag, which failover decisions use),
// and answers /health and /metrics on the node's HTTP port.
//
// What the copy does follows from its role in the record (reconcile()):
//
//   primary   takes writes once its fence says primary at the record's
//             epoch. A promoted replica first replays the vote log until it
//             meets the barrier of its new epoch (the shard service appends
//             it when it attaches), so every vote acknowledged under earlier
//             epochs is in it. Its applier keeps running (safety net, and
//             the one owner of outbox deletions).
//   replica   its applier (replica-applier.ts) consumes the shard's partition.
//   fenced    a deposed primary: its fence refuses every write at once; then
//             it counts the votes it holds that the new primary lacks (in
//             async mode those are the votes lost to the failover: logged,
//             counted in a metric and sent to the managers, who add them to
//             the record's history), wipes itself, is seeded again from a
//             live copy (copy-seeder.ts) and asks the managers to list it as
//             a replica again (POST /v1/shards/:s/rejoin).
//   unassigned not in the record (being removed by scale): writes refused,
//             applier stopped.
//
// A copy holds a consistent prefix of the shard only once meta.copy =
// 'ready' (seeded, or created empty with a brand-new shard). A copy without
// it - its data directory was lost - never takes writes by itself: as a
// replica it is seeded first; named primary it reports its data lost in its
// heartbeats, and the managers promote a replica instead, or, with none,
// raise the epoch for it, after which it rebuilds itself from the whole vote
// log before it takes writes.
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../common/process-metrics.js';
import { BrokerClient } from '../../client/broker-client.js';
import { ShardDirectory, type ShardsSnapshot } from '../../client/shard-directory.js';
import { partitionOf, roleIn, VOTE_TOPIC, type PgRole, type ShardRecord } from '../../core/shard-records.js';
import { HeartbeatSender } from '../common/heartbeat-sender.js';
import type { Logger } from '../common/logger.js';
import type { NodeConfig } from '../common/node-config.js';
import { countMissingOn, resetCopy, seedCopy, type SeedSource } from './copy-seeder.js';
import { pgOsUser } from './pg-os-user.js';
import { findPgBinDir, PgServer } from './pg-server.js';
import { pgConnection, readMeta, SCHEMA_SQL, setFence } from './pg-schema.js';
import { parsePostgresSettings, type PostgresSettings } from './postgres-settings.js';
import { ReplicaApplier } from './replica-applier.js';
import { decodeEntry } from '../shard/vote-log-codec.js';

/** A copy's votes and applied offset, counted now (bigint as a number: the pool parses int8). */
const COUNT_SQL = 'SELECT (SELECT count(*) FROM votes)::bigint AS votes, (SELECT next_offset FROM applied WHERE partition = $1) AS next_offset';

/** How stale the last successful probe may be before /health says unhealthy. */
const PROBE_STALE_MS = 3_000;
const PROBE_EVERY_MS = 1_000;
const RECONCILE_EVERY_MS = 2_000;

/** The fence's role, or what the copy is busy with. */
export type CopyState = PgRole | 'starting' | 'seeding' | 'lost-data' | 'rejoining' | 'promoting';

export class PostgresNode {
  readonly settings: PostgresSettings;
  /** Made in start(), once the operating-system user is known. */
  server!: PgServer;
  private readonly binDir: string;
  readonly app: FastifyInstance;
  readonly directory: ShardDirectory;
  private readonly heartbeat: HeartbeatSender;
  private pool: pg.Pool | null = null;
  private localAddress = '';
  private readonly registry = new Registry();
  /** The fence's role (what the copy enforces). */
  private fenceRole: PgRole = 'unassigned';
  /** What /health and heartbeats show: the fence's role or a transition. */
  private state: CopyState = 'starting';
  private epoch = 0;
  private copyReady = false;
  private votes: number | null = null;
  private storedOffset: number | null = null;
  private lastProbeOk = 0;
  private lastProbeError: string | null = null;
  private lastCountAt = 0;
  private countEveryMs = 1_000;
  private probeTimer: NodeJS.Timeout | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private probing = false;
  private stopped = false;
  private latest: ShardRecord | null = null;
  private brokersInTopology: number | null = null;
  private partitions = 1;
  private brokers: BrokerClient | null = null;
  private applier: ReplicaApplier | null = null;
  private reconciling = false;
  private again = false;
  /** The record epoch at which this copy, named primary, found its data gone. */
  private dataLostAtEpoch: number | null = null;
  /** A fenced copy already seeded again at this epoch, waiting for the managers to take it back. */
  private rejoinPending: { epoch: number; lost: number | null } | null = null;
  private lastSeed: { source: string; votes: number; nextOffset: number; ms: number; at: string } | null = null;
  private lostInFailovers = 0;
  private lostCounter!: Counter;
  readonly startedAt = Date.now();
  /** Called when PostgreSQL dies under us: the node must exit non-zero so its runtime restarts it. */
  onFatal: (reason: string) => void = () => undefined;

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    this.settings = parsePostgresSettings(config.settings);
    const binDir = findPgBinDir();
    if (!binDir) {
      throw new Error(
        `no PostgreSQL binaries: set DVOTE_PG_BIN to the folder holding postgres and initdb${process.env.DVOTE_PG_BIN ? ` (${process.env.DVOTE_PG_BIN} has none)` : ''}, or install postgresql`,
      );
    }
    this.binDir = binDir;
    this.app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
    this.directory = new ShardDirectory({ managers: config.managers.map((m) => m.http), pollMs: 500 });
    this.heartbeat = new HeartbeatSender(config, log, () => this.heartbeatInfo());
    this.defineMetrics();
  }

  private get partition(): number {
    return partitionOf(this.settings.shard);
  }

  async start(): Promise<void> {
    const user = await pgOsUser(this.log);
    this.server = new PgServer({
      binDir: this.binDir,
      dataDir: join(this.config.dataDir, 'pgdata'),
      listen: this.settings.pgListen,
      user,
      log: this.log,
      ...(this.settings.postgresConf ? { settings: this.settings.postgresConf } : {}),
    });
    this.log.info({ user: user.name, uid: user.uid, dataDir: this.server.pgdata }, 'preparing PostgreSQL');
    await this.server.ensureInitialized();
    await this.server.writeConfig();
    this.server.onUnexpectedExit((code, signal) => {
      if (this.stopped) return;
      this.onFatal(`PostgreSQL exited unexpectedly (${signal ?? `code ${code}`})`);
    });
    await this.server.start();
    const host = this.settings.pgListen.host === '0.0.0.0' ? '127.0.0.1' : this.settings.pgListen.host;
    this.localAddress = `${host}:${this.settings.pgListen.port}`;
    this.pool = new pg.Pool({ ...pgConnection(this.localAddress, this.config.id), max: 4, idleTimeoutMillis: 0 });
    this.pool.on('error', (e) => this.log.warn({ err: e.message }, 'idle PostgreSQL connection failed'));
    await this.pool.query(SCHEMA_SQL);
    await this.pool.query(
      `INSERT INTO meta (key, value) VALUES ('node', $1), ('shard', $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [this.config.id, String(this.settings.shard)],
    );
    const meta = await readMeta(this.pool);
    this.epoch = Number(meta.epoch ?? 0);
    this.fenceRole = (meta.role as PgRole | undefined) ?? 'unassigned';
    this.state = this.fenceRole;
    this.copyReady = meta.copy === 'ready';
    await this.probe();

    this.registerRoutes();
    await this.app.listen({ host: this.config.listen.host, port: this.config.listen.httpPort });
    this.heartbeat.start();
    this.directory.watch((snap) => this.onSnapshot(snap));
    this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.probeTimer.unref();
    this.reconcileTimer = setInterval(() => this.scheduleReconcile(), RECONCILE_EVERY_MS);
    this.reconcileTimer.unref();
    this.log.info({ state: this.state, epoch: this.epoch, copy: this.copyReady ? 'ready' : 'empty', pg: this.settings.pgAdvertise, http: this.config.advertise.http }, 'postgres node started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    await this.directory.stop();
    await this.heartbeat.stop();
    await this.app.close().catch(() => undefined);
    await this.applier?.stop();
    await this.brokers?.close().catch(() => undefined);
    await this.pool?.end().catch(() => undefined);
    await this.server?.stop();
  }

  private onSnapshot(snap: ShardsSnapshot): void {
    const rec = snap.shards.find((r) => r.shard === this.settings.shard) ?? null;
    if (snap.topology) {
      this.brokersInTopology = snap.topology.brokers;
      this.partitions = Math.max(1, snap.topology.shards);
    }
    // An epoch never goes back (a lagging manager's stale answer is ignored).
    if (rec && (!this.latest || rec.epoch >= this.latest.epoch)) this.latest = rec;
    this.scheduleReconcile();
  }

  /** Run reconcile() now, or once more after the run in progress. */
  private scheduleReconcile(): void {
    if (this.stopped) return;
    if (this.reconciling) {
      this.again = true;
      return;
    }
    this.reconciling = true;
    void (async () => {
      try {
        do {
          this.again = false;
          try {
            await this.reconcile();
          } catch (e) {
            this.log.warn({ err: (e as Error).message }, 'could not follow the shard record; will retry');
          }
        } while (this.again && !this.stopped);
      } finally {
        this.reconciling = false;
      }
    })();
  }

  private get hasLog(): boolean {
    return (this.brokersInTopology ?? 0) > 0;
  }

  private ensureApplier(): ReplicaApplier | null {
    if (!this.hasLog) return null;
    this.brokers ??= new BrokerClient({ managers: this.config.managers.map((m) => m.http), timeoutMs: 10_000, connections: 4 });
    this.applier ??= new ReplicaApplier({
      address: this.localAddress,
      applicationName: this.config.id,
      brokers: this.brokers,
      partition: this.partition,
      partitions: this.partitions,
      log: this.log,
      // Replicas in sync mode hold up votes until they apply: fetch at once.
      // Elsewhere nobody waits for a replica, and gathering ~100 ms of the
      // log per transaction costs far less CPU than many small ones (the
      // cluster shares a few cores); the primary's own applier (outbox
      // cleanup, safety net) is in even less of a hurry.
      gatherMs: () => (this.fenceRole === 'primary' ? 200 : this.latest?.mode === 'sync' ? 1 : 100),
    });
    this.applier.start();
    return this.applier;
  }

  private async stopApplier(): Promise<void> {
    await this.applier?.stop();
  }

  private async fence(role: PgRole, epoch: number): Promise<void> {
    if (this.fenceRole === role && this.epoch === epoch) return;
    const client = await this.pool!.connect();
    try {
      await setFence(client, role, epoch);
    } finally {
      client.release();
    }
    this.log.info({ from: this.fenceRole, to: role, epoch }, 'copy role changed');
    this.fenceRole = role;
    this.epoch = epoch;
  }

  /** True while `rec` is still what the managers say (a long step stops when it is not). */
  private stillCurrent(rec: ShardRecord, role: PgRole): boolean {
    const l = this.latest;
    return !this.stopped && l !== null && l.epoch === rec.epoch && roleIn(l, this.config.id) === role;
  }

  private abortWhenStale(rec: ShardRecord, role: PgRole): AbortController {
    const ctrl = new AbortController();
    const t = setInterval(() => {
      if (!this.stillCurrent(rec, role)) {
        ctrl.abort();
        clearInterval(t);
      }
    }, 100);
    t.unref();
    ctrl.signal.addEventListener('abort', () => clearInterval(t), { once: true });
    return ctrl;
  }

  /** Make this copy do what its role in the latest record asks (see the header). */
  private async reconcile(): Promise<void> {
    const rec = this.latest;
    if (!rec || !this.pool || this.brokersInTopology === null) return;
    if (rec.epoch < this.epoch) return;
    const role = roleIn(rec, this.config.id);
    switch (role) {
      case 'primary':
        return this.becomePrimary(rec);
      case 'replica':
        return this.becomeReplica(rec);
      case 'fenced':
        return this.beFenced(rec);
      case 'unassigned':
        await this.stopApplier();
        await this.fence('unassigned', rec.epoch);
        this.state = 'unassigned';
        return;
    }
  }

  private async becomePrimary(rec: ShardRecord): Promise<void> {
    if (!this.copyReady) {
      const fresh = !(await this.shardHasData(rec));
      if (fresh) {
        if (this.hasLog) await resetCopy(this.pool!, this.partition);
        else await this.pool!.query(`INSERT INTO meta (key, value) VALUES ('copy', 'ready') ON CONFLICT (key) DO UPDATE SET value = excluded.value`);
        this.copyReady = true;
        this.log.info({ epoch: rec.epoch }, 'a new shard: this empty copy starts as its primary');
      } else if (this.hasLog && this.dataLostAtEpoch !== null && rec.epoch > this.dataLostAtEpoch) {
        // The managers raised the epoch for us (no replica to promote): rebuild from the whole log.
        await resetCopy(this.pool!, this.partition);
        this.copyReady = true;
        this.log.warn({ epoch: rec.epoch }, 'rebuilding this primary from the whole vote log (its data was lost and no replica could take over)');
      } else {
        if (this.dataLostAtEpoch === null) this.log.error({ epoch: rec.epoch }, 'this copy is named primary but its data is gone: refusing writes; the managers will promote a replica');
        this.dataLostAtEpoch ??= rec.epoch;
        this.state = 'lost-data';
        return;
      }
    }
    this.dataLostAtEpoch = null;
    if (this.fenceRole === 'primary' && this.epoch === rec.epoch) {
      this.state = 'primary';
      this.ensureApplier();
      return;
    }
    const applier = this.ensureApplier();
    if (applier) {
      // Replay the log up to the barrier of our epoch before taking writes.
      this.state = 'promoting';
      const ctrl = this.abortWhenStale(rec, 'primary');
      this.log.info({ epoch: rec.epoch, from: applier.status().nextOffset }, 'replaying the vote log up to the barrier of the new epoch before taking writes');
      const ok = await applier.waitBarrier(rec.epoch, ctrl.signal);
      ctrl.abort();
      if (!ok) {
        this.state = this.fenceRole;
        return;
      }
    }
    await this.fence('primary', rec.epoch);
    this.state = 'primary';
  }

  /** Does the shard hold votes anywhere (so an empty copy named primary has lost data)? */
  private async shardHasData(rec: ShardRecord): Promise<boolean> {
    if (rec.epoch > 1) return true;
    if (this.hasLog) {
      this.brokers ??= new BrokerClient({ managers: this.config.managers.map((m) => m.http), timeoutMs: 10_000, connections: 4 });
      try {
        // Barriers alone (a shard service attached) are not data; any vote is.
        const r = await this.brokers.fetch(VOTE_TOPIC, this.partition, 0, { maxMessages: 100 });
        if (r.highWatermark > 100 || r.messages.some((m) => decodeEntry(m.value)?.kind === 'vote')) return true;
      } catch (e) {
        const status = (e as { status?: number }).status;
        if (status !== 404) throw new Error(`cannot tell whether the shard has votes (vote log: ${(e as Error).message})`);
      }
    }
    for (const r of rec.replicas) {
      const addr = rec.members[r]?.pg;
      if (!addr || r === this.config.id) continue;
      const c = new pg.Client({ ...pgConnection(addr, `${this.config.id}-check`), connectionTimeoutMillis: 2_000 });
      c.on('error', () => undefined);
      try {
        await c.connect();
        const q = await c.query<{ n: number }>('SELECT count(*)::bigint AS n FROM (SELECT 1 FROM votes LIMIT 1) s');
        if ((q.rows[0]?.n ?? 0) > 0) return true;
      } catch {
        // unreachable: judge by the others
      } finally {
        await c.end().catch(() => undefined);
      }
    }
    return false;
  }

  private async isPrimaryAt(address: string, epoch: number): Promise<boolean> {
    const c = new pg.Client({ ...pgConnection(address, `${this.config.id}-check`), connectionTimeoutMillis: 2_000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      const m = await readMeta(c);
      return m.role === 'primary' && Number(m.epoch) === epoch;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  private seedSources(rec: ShardRecord): SeedSource[] {
    const out: SeedSource[] = [];
    for (const r of rec.replicas) {
      const a = rec.members[r]?.pg;
      if (a && r !== this.config.id) out.push({ node: r, address: a, role: 'replica' });
    }
    const p = rec.members[rec.primary]?.pg;
    if (p && rec.primary !== this.config.id) out.push({ node: rec.primary, address: p, role: 'primary' });
    return out;
  }

  /** Seed this copy from the best live copy; without one (and with a log), start empty at offset 0 and replay the log. */
  private async seed(rec: ShardRecord): Promise<boolean> {
    await this.stopApplier();
    this.state = 'seeding';
    const r = await seedCopy(this.pool!, this.seedSources(rec), { partition: this.partition, applicationName: this.config.id });
    if (r) {
      this.lastSeed = { ...r, at: new Date().toISOString() };
      this.log.info(r, 'seeded this copy from another copy; catching up from the vote log');
    } else if (this.hasLog) {
      await resetCopy(this.pool!, this.partition);
      this.lastSeed = { source: 'the vote log', votes: 0, nextOffset: 0, ms: 0, at: new Date().toISOString() };
      this.log.warn('no ready copy to seed from: replaying the whole vote log instead');
    } else {
      this.log.warn('no ready copy to seed from yet (and no vote log): will try again');
      return false;
    }
    this.copyReady = true;
    this.votes = r ? r.votes : 0;
    return true;
  }

  private async becomeReplica(rec: ShardRecord): Promise<void> {
    this.rejoinPending = null;
    if (!this.copyReady) {
      // Writes of a fenced copy stay refused while it is seeded.
      if (this.fenceRole === 'primary') await this.fence('fenced', rec.epoch);
      if (!(await this.seed(rec))) return;
    }
    await this.fence('replica', rec.epoch);
    this.state = 'replica';
    this.ensureApplier();
  }

  private async beFenced(rec: ShardRecord): Promise<void> {
    await this.stopApplier();
    await this.fence('fenced', rec.epoch);
    if (this.rejoinPending?.epoch !== rec.epoch) {
      this.state = 'rejoining';
      let lost: number | null = null;
      if (this.copyReady) {
        const primaryAddr = rec.members[rec.primary]?.pg;
        if (!primaryAddr) return;
        // Compare only with a primary that has finished its replay (else it merely lags).
        if (!(await this.isPrimaryAt(primaryAddr, rec.epoch))) return;
        const c = await countMissingOn(this.pool!, primaryAddr, this.config.id);
        lost = c.missing;
        if (lost > 0) {
          this.lostInFailovers += lost;
          this.lostCounter.inc(lost);
          this.log.warn(
            { held: c.held, lost, newPrimary: rec.primary, epoch: rec.epoch, mode: rec.mode },
            rec.mode === 'async'
              ? 'this deposed primary holds votes the new primary lacks: they are lost to the failover (async mode)'
              : 'this deposed primary holds votes the new primary lacks (never acknowledged: their answer was an error)',
          );
        } else {
          this.log.info({ held: c.held, newPrimary: rec.primary }, 'the new primary holds every vote of this deposed primary');
        }
      }
      this.copyReady = false;
      if (!(await this.seed(rec))) return;
      await this.fence('fenced', rec.epoch);
      this.rejoinPending = { epoch: rec.epoch, lost };
    }
    this.state = 'rejoining';
    await this.directory.client.request('POST', `/v1/shards/${this.settings.shard}/rejoin`, {
      node: this.config.id,
      epoch: rec.epoch,
      lost: this.rejoinPending!.lost,
      seededFrom: this.lastSeed?.source ?? null,
    });
    void this.directory.refresh().catch(() => undefined);
  }

  private async probe(): Promise<void> {
    if (!this.pool || this.probing) return;
    this.probing = true;
    try {
      const now = Date.now();
      if (now - this.lastCountAt >= this.countEveryMs && this.state !== 'seeding') {
        const t0 = performance.now();
        await this.countVotes(this.pool);
        const ms = performance.now() - t0;
        // Counting a big table costs, on every copy: keep it under ~2% of one core.
        this.countEveryMs = Math.max(1_000, Math.round(ms * 50));
      } else {
        await this.pool.query('SELECT 1');
      }
      this.lastProbeOk = Date.now();
      this.lastProbeError = null;
    } catch (e) {
      this.lastProbeError = (e as Error).message;
    } finally {
      this.probing = false;
    }
  }

  /** Count this copy's votes and read its stored offset now (the periodic probe and GET /votes/count). */
  private async countVotes(pool: pg.Pool): Promise<void> {
    const r = await pool.query<{ votes: number; next_offset: number | null }>(COUNT_SQL, [this.partition]);
    this.votes = r.rows[0]?.votes ?? 0;
    this.storedOffset = r.rows[0]?.next_offset ?? null;
    this.lastCountAt = Date.now();
  }

  /** The next log offset this copy will apply (the applier's, else the stored one). */
  private get appliedOffset(): number | null {
    return this.applier?.isRunning ? (this.applier.status().nextOffset ?? this.storedOffset) : this.storedOffset;
  }

  private get lag(): number | null {
    return this.applier?.isRunning ? this.applier.status().lag : null;
  }

  health(): Record<string, unknown> & { healthy: boolean } {
    const fresh = Date.now() - this.lastProbeOk < PROBE_STALE_MS || this.state === 'seeding';
    const healthy = this.server.running && fresh && this.state !== 'lost-data';
    const a = this.applier?.status();
    return {
      healthy,
      id: this.config.id,
      role: 'postgres',
      state: this.state,
      fence: this.fenceRole,
      copy: this.copyReady ? 'ready' : 'empty',
      shard: this.settings.shard,
      instance: this.settings.instance,
      epoch: this.epoch,
      votes: this.votes,
      appliedOffset: this.appliedOffset,
      lag: this.lag,
      ...(a
        ? {
            applier: {
              running: a.running,
              nextOffset: a.nextOffset,
              highWatermark: a.highWatermark,
              barrier: a.barrier,
              applied: a.applied,
              inserted: a.inserted,
              skipped: a.skipped,
              ...(a.lastError ? { lastError: a.lastError } : {}),
            },
          }
        : {}),
      ...(this.lastSeed ? { lastSeed: this.lastSeed } : {}),
      ...(this.dataLostAtEpoch !== null ? { dataLostAtEpoch: this.dataLostAtEpoch } : {}),
      lostInFailovers: this.lostInFailovers,
      pg: {
        address: this.settings.pgAdvertise,
        version: this.server.version,
        pid: this.server.pid,
        uptimeMs: this.server.startedAt ? Date.now() - this.server.startedAt : null,
      },
      managers: this.directory.lastError ? { error: this.directory.lastError } : { ok: true },
      uptimeMs: Date.now() - this.startedAt,
      ...(healthy
        ? {}
        : {
            reason: !this.server.running
              ? 'PostgreSQL is not running'
              : this.state === 'lost-data'
                ? `named primary at epoch ${this.dataLostAtEpoch} but its data is gone; waiting for the managers to promote a replica or raise the epoch`
                : `PostgreSQL does not answer: ${this.lastProbeError ?? 'no probe yet'}`,
          }),
    };
  }

  private heartbeatInfo(): Record<string, unknown> {
    return {
      shard: this.settings.shard,
      instance: this.settings.instance,
      state: this.state,
      fence: this.fenceRole,
      copy: this.copyReady ? 'ready' : 'empty',
      epoch: this.epoch,
      votes: this.votes,
      appliedOffset: this.appliedOffset,
      lag: this.lag,
      ...(this.dataLostAtEpoch !== null ? { dataLostAtEpoch: this.dataLostAtEpoch } : {}),
      pg: this.settings.pgAdvertise,
    };
  }

  private registerRoutes(): void {
    this.app.get('/health', async (_req, reply) => {
      const h = this.health();
      return reply.code(h.healthy ? 200 : 503).send(h);
    });
    this.app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.registry.contentType);
      return this.registry.metrics();
    });
    // The periodic count is a sample (every second or less often, as the
    // table grows); `dvote report` asks for the number as of now.
    this.app.get('/votes/count', async (_req, reply) => {
      if (!this.pool) return reply.code(503).send({ error: `no connection to this copy's PostgreSQL (state ${this.state})` });
      await this.countVotes(this.pool);
      return { votes: this.votes, appliedOffset: this.storedOffset, countedAt: new Date(this.lastCountAt).toISOString() };
    });
  }

  private defineMetrics(): void {
    const r = this.registry;
    r.setDefaultLabels({ node: this.config.id, role: 'postgres', shard: String(this.settings.shard) });
    collectProcessMetrics(r);
    const gauge = (name: string, help: string, value: () => number | null) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          const v = value();
          if (v !== null) this.set(v);
        },
      });
    gauge('dvote_pg_up', '1 while PostgreSQL answers queries', () => (Date.now() - this.lastProbeOk < PROBE_STALE_MS ? 1 : 0));
    gauge('dvote_pg_votes', 'Votes stored in this copy (counted at most every second)', () => this.votes);
    gauge('dvote_votes_stored', 'Votes stored in this copy (counted at most every second)', () => this.votes);
    gauge('dvote_pg_epoch', 'Epoch of the shard this copy follows', () => this.epoch);
    gauge('dvote_pg_is_primary', '1 if this copy is the primary', () => (this.fenceRole === 'primary' ? 1 : 0));
    gauge('dvote_pg_applied_offset', 'Next vote log offset this copy will apply', () => this.appliedOffset);
    gauge('dvote_replication_lag', 'Vote log entries committed on the brokers and not yet applied to this copy', () => this.lag);
    this.lostCounter = new Counter({
      name: 'dvote_votes_lost_in_failover_total',
      help: 'Votes this copy held as a deposed primary that the new primary lacked (async mode: lost to the failover)',
      registers: [r],
    });
  }
}
