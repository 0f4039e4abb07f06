// The 'postgres' role: our node program supervising one PostgreSQL server of a
// shard. It makes and starts the server (pg-server.ts), creates the schema,
// follows the shard's record in the managers to know whether this copy is the
// primary, a replica or fenced (and writes that, with the epoch, into the
// copy's fence: pg-schema.ts), beats to the managers, and answers /health and
// /metrics on the node's HTTP port.
//
// Part B hooks: `beforeTakingWrites` (a promoted replica replays the vote
// log's tail first) and the replica applier (consumes the shard's partition
// into this copy and records its progress in `applied`).
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { ShardDirectory } from '../../client/shard-directory.js';
import { partitionOf, roleIn, type PgRole, type ShardRecord } from '../../core/shard-records.js';
import { HeartbeatSender } from '../common/heartbeat-sender.js';
import type { Logger } from '../common/logger.js';
import type { NodeConfig } from '../common/node-config.js';
import { pgOsUser } from './pg-os-user.js';
import { findPgBinDir, PgServer } from './pg-server.js';
import { pgConnection, readMeta, SCHEMA_SQL, setFence } from './pg-schema.js';
import { parsePostgresSettings, type PostgresSettings } from './postgres-settings.js';

/** How stale the last successful probe may be before /health says unhealthy. */
const PROBE_STALE_MS = 3_000;
const PROBE_EVERY_MS = 1_000;

export type CopyState = PgRole | 'starting';

export class PostgresNode {
  readonly settings: PostgresSettings;
  /** Made in start(), once the operating-system user is known. */
  server!: PgServer;
  private readonly binDir: string;
  readonly app: FastifyInstance;
  readonly directory: ShardDirectory;
  private readonly heartbeat: HeartbeatSender;
  private pool: pg.Pool | null = null;
  private readonly registry = new Registry();
  private state: CopyState = 'starting';
  private epoch = 0;
  private votes: number | null = null;
  private appliedOffset: number | null = null;
  private lastProbeOk = 0;
  private lastProbeError: string | null = null;
  private lastCountAt = 0;
  private countEveryMs = 1_000;
  private probeTimer: NodeJS.Timeout | null = null;
  private roleChain: Promise<void> = Promise.resolve();
  private stopped = false;
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
    this.pool = new pg.Pool({ ...pgConnection(`${host}:${this.settings.pgListen.port}`, this.config.id), max: 3, idleTimeoutMillis: 0 });
    this.pool.on('error', (e) => this.log.warn({ err: e.message }, 'idle PostgreSQL connection failed'));
    await this.pool.query(SCHEMA_SQL);
    await this.pool.query(
      `INSERT INTO meta (key, value) VALUES ('node', $1), ('shard', $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [this.config.id, String(this.settings.shard)],
    );
    const meta = await readMeta(this.pool);
    this.epoch = Number(meta.epoch ?? 0);
    this.state = (meta.role as PgRole | undefined) ?? 'unassigned';
    await this.probe();

    this.registerRoutes();
    await this.app.listen({ host: this.config.listen.host, port: this.config.listen.httpPort });
    this.heartbeat.start();
    this.directory.watch((snap) => {
      const rec = snap.shards.find((r) => r.shard === this.settings.shard) ?? null;
      this.roleChain = this.roleChain.then(() => this.followRecord(rec)).catch((e) => this.log.warn({ err: (e as Error).message }, 'could not apply the shard record; will retry'));
    });
    this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.probeTimer.unref();
    this.log.info({ state: this.state, epoch: this.epoch, pg: this.settings.pgAdvertise, http: this.config.advertise.http }, 'postgres node started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    await this.directory.stop();
    await this.heartbeat.stop();
    await this.app.close().catch(() => undefined);
    await this.pool?.end().catch(() => undefined);
    await this.server?.stop();
  }

  /**
   * Make this copy's fence say what the managers' record says. An epoch never
   * goes back (a lagging manager's stale answer is ignored).
   */
  private async followRecord(rec: ShardRecord | null): Promise<void> {
    if (!rec || !this.pool) return;
    const role = roleIn(rec, this.config.id);
    if (rec.epoch < this.epoch) return;
    if (role === this.state && rec.epoch === this.epoch) return;
    if (role === 'primary') await this.beforeTakingWrites(rec);
    const client = await this.pool.connect();
    try {
      await setFence(client, role, rec.epoch);
    } finally {
      client.release();
    }
    this.log.info({ from: this.state, to: role, epoch: rec.epoch, primary: rec.primary }, 'copy role changed');
    this.state = role;
    this.epoch = rec.epoch;
  }

  /** Part B: a promoted replica replays the shard's partition up to its end before it takes writes. */
  protected async beforeTakingWrites(_rec: ShardRecord): Promise<void> {
    // Part A keeps no log; nothing to replay.
  }

  private async probe(): Promise<void> {
    if (!this.pool) return;
    try {
      const now = Date.now();
      if (now - this.lastCountAt >= this.countEveryMs) {
        const t0 = performance.now();
        const r = await this.pool.query<{ votes: number; next_offset: number | null }>(
          'SELECT (SELECT count(*) FROM votes)::bigint AS votes, (SELECT next_offset FROM applied WHERE partition = $1) AS next_offset',
          [partitionOf(this.settings.shard)],
        );
        const ms = performance.now() - t0;
        this.votes = r.rows[0]?.votes ?? 0;
        this.appliedOffset = r.rows[0]?.next_offset ?? null;
        this.lastCountAt = Date.now();
        // Counting a big table costs: keep it under ~10% of one core.
        this.countEveryMs = Math.max(1_000, Math.round(ms * 10));
      } else {
        await this.pool.query('SELECT 1');
      }
      this.lastProbeOk = Date.now();
      this.lastProbeError = null;
    } catch (e) {
      this.lastProbeError = (e as Error).message;
    }
  }

  health(): Record<string, unknown> & { healthy: boolean } {
    const fresh = Date.now() - this.lastProbeOk < PROBE_STALE_MS;
    const healthy = this.server.running && fresh;
    return {
      healthy,
      id: this.config.id,
      role: 'postgres',
      state: this.state,
      shard: this.settings.shard,
      instance: this.settings.instance,
      epoch: this.epoch,
      votes: this.votes,
      appliedOffset: this.appliedOffset,
      pg: {
        address: this.settings.pgAdvertise,
        version: this.server.version,
        pid: this.server.pid,
        uptimeMs: this.server.startedAt ? Date.now() - this.server.startedAt : null,
      },
      managers: this.directory.lastError ? { error: this.directory.lastError } : { ok: true },
      uptimeMs: Date.now() - this.startedAt,
      ...(healthy ? {} : { reason: !this.server.running ? 'PostgreSQL is not running' : `PostgreSQL does not answer: ${this.lastProbeError ?? 'no probe yet'}` }),
    };
  }

  private heartbeatInfo(): Record<string, unknown> {
    return {
      shard: this.settings.shard,
      instance: this.settings.instance,
      state: this.state,
      epoch: this.epoch,
      votes: this.votes,
      appliedOffset: this.appliedOffset,
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
  }

  private defineMetrics(): void {
    const r = this.registry;
    r.setDefaultLabels({ node: this.config.id, role: 'postgres', shard: String(this.settings.shard) });
    collectDefaultMetrics({ register: r });
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
    gauge('dvote_pg_epoch', 'Epoch of the shard this copy follows', () => this.epoch);
    gauge('dvote_pg_is_primary', '1 if this copy is the primary', () => (this.state === 'primary' ? 1 : 0));
    gauge('dvote_pg_applied_offset', 'Next vote log offset this copy will apply', () => this.appliedOffset);
  }
}
