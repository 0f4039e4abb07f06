// The shard service's connections to its shard's current primary: one pg
// Pool, opened once and kept (the original opened a connection per replica
// write and lost most of its time doing so). pg.Pool replaces a broken
// connection on the next checkout, so a restarted primary is reconnected by
// itself; a new primary or epoch (failover) gets a new pool, and the old one
// is closed once its queries are done.
import pg from 'pg';
import type { Logger } from '../common/logger.js';
import { pgConnection, readMeta } from '../postgres/pg-schema.js';

export interface PrimaryTarget {
  node: string;
  address: string;
  epoch: number;
  pool: pg.Pool;
}

export interface PrimaryProbe {
  ok: boolean;
  /** Why the primary cannot take writes yet. */
  reason?: string;
  at: number;
}

/** Session settings of the shard service's connections to its primary (see switchTo). */
export const PRIMARY_SESSION_OPTIONS = '-c enable_seqscan=off';

export class NoPrimaryError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'NoPrimaryError';
  }
}

export class PrimaryConnection {
  private target: PrimaryTarget | null = null;
  lastProbe: PrimaryProbe = { ok: false, reason: 'not probed yet', at: 0 };

  constructor(
    private readonly log: Logger,
    private readonly applicationName: string,
    private readonly poolSize: number,
    /** Client-side limit on one query, so a frozen primary fails batches instead of hanging them. */
    private readonly queryTimeoutMs = 10_000,
  ) {}

  get current(): PrimaryTarget | null {
    return this.target;
  }

  /** The target to write to, or NoPrimaryError. */
  require(): PrimaryTarget {
    if (!this.target) throw new NoPrimaryError('this shard has no primary yet (waiting for its record in the managers)');
    return this.target;
  }

  /** Point at (node, address, epoch); no-op when unchanged. Call between batches (see VoteBatcher.pause/idle). */
  async switchTo(node: string, address: string, epoch: number): Promise<boolean> {
    const t = this.target;
    if (t && t.node === node && t.address === address && t.epoch === epoch) return false;
    if (t && t.node === node && t.address === address) {
      // Same server, new epoch: keep the connections.
      this.target = { ...t, epoch };
      this.log.info({ primary: node, epoch }, 'primary epoch changed');
      return true;
    }
    const pool = new pg.Pool({
      ...pgConnection(address, this.applicationName),
      // The vote batch is a prepared statement (parsed once per connection)
      // whose generic plan is cached. Sequential scans are off on these
      // connections: a generic plan made while the table was small would
      // otherwise read the stored votes with a scan of the whole table, and
      // keep doing so while it grows (vote-store.ts). "Off" only weighs them
      // down: a read with no other way (the tally) still scans.
      options: PRIMARY_SESSION_OPTIONS,
      max: this.poolSize,
      idleTimeoutMillis: 0,
      connectionTimeoutMillis: 2_000,
      query_timeout: this.queryTimeoutMs,
    });
    pool.on('error', (e) => this.log.warn({ err: e.message, primary: node }, 'idle connection to the primary failed; it will be replaced'));
    this.target = { node, address, epoch, pool };
    this.lastProbe = { ok: false, reason: 'not probed yet', at: 0 };
    this.log.info({ primary: node, address, epoch }, 'writing to a new primary');
    if (t) void t.pool.end().catch(() => undefined);
    // Open connections now, not on the first vote.
    void this.warm(pool, Math.min(4, this.poolSize));
    return true;
  }

  private async warm(pool: pg.Pool, n: number): Promise<void> {
    const clients = await Promise.allSettled(Array.from({ length: n }, () => pool.connect()));
    for (const c of clients) if (c.status === 'fulfilled') c.value.release();
  }

  /** Can the primary take writes at our epoch? (Its fence says primary at that epoch.) */
  async probe(): Promise<PrimaryProbe> {
    const t = this.target;
    if (!t) return (this.lastProbe = { ok: false, reason: 'no primary known yet', at: Date.now() });
    try {
      const meta = await readMeta(t.pool);
      if (meta.role !== 'primary') {
        this.lastProbe = { ok: false, reason: `${t.node} is ${meta.role ?? 'unassigned'}, not yet primary`, at: Date.now() };
      } else if (Number(meta.epoch) !== t.epoch) {
        this.lastProbe = { ok: false, reason: `${t.node} is at epoch ${meta.epoch}, the shard record at ${t.epoch}`, at: Date.now() };
      } else {
        this.lastProbe = { ok: true, at: Date.now() };
      }
    } catch (e) {
      this.lastProbe = { ok: false, reason: `${t.node} (${t.address}) does not answer: ${(e as Error).message}`, at: Date.now() };
    }
    return this.lastProbe;
  }

  async close(): Promise<void> {
    const t = this.target;
    this.target = null;
    if (t) await t.pool.end().catch(() => undefined);
  }
}
