// Replication mode "sync" without brokers (allowed by the topology: no vote
// log). The service commits on the primary, then inserts the accepted votes
// into every replica in parallel (ON CONFLICT DO NOTHING, one statement per
// replica, pools kept open) and answers once all reachable replicas have
// them.
//
// Without a log there is nothing to replay, so copies are reconciled here:
//   - a replica whose insert failed is marked behind; a background task
//     copies the primary's votes into it (idempotent) once it answers again,
//     while new batches keep being written to it;
//   - a replica that joins the record (scale, rejoin) is filled the same way;
//   - at a new primary (failover), before any vote: the votes each reachable
//     replica holds that the new primary lacks are copied into it (they can
//     only be votes of the old primary, unacknowledged ones included, so no
//     voter has two choices), then every replica is filled from it.
// A replica that cannot be reached is not waited for (sync degrades to the
// replicas that answer; /health lists who is behind).
import pg from 'pg';
import type { ShardRecord } from '../../core/shard-records.js';
import { pgConnection } from '../postgres/pg-schema.js';
import { sleep } from './vote-log.js';
import { AttachedPath, timed, type Attachment, type PathDeps, type ReplicationInfo } from './replication-path.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';
import type { PrimaryTarget } from './primary-connection.js';
import { castAtNow, insertCopies } from './vote-store.js';

interface ReplicaConn {
  node: string;
  address: string;
  pool: pg.Pool;
  behind: boolean;
  filling: boolean;
  error: string | null;
  closed: boolean;
}

const COPY_CHUNK = 20_000;

export class SyncDirectPath extends AttachedPath {
  readonly mode = 'sync' as const;
  private readonly replicas = new Map<string, ReplicaConn>();

  constructor(deps: PathDeps) {
    super(deps);
  }

  protected async prepare(att: Attachment): Promise<void> {
    this.setReplicas(att.record, att.target.node);
    this.waitingFor = `reconciling the copies around ${att.target.node}`;
    // Pull: votes a replica has and the primary lacks.
    for (const r of this.replicas.values()) {
      for (let tries = 0; tries < 3 && !att.signal.aborted; tries++) {
        try {
          await copyAllVotes(r.pool, att.target.pool, att.signal);
          break;
        } catch (e) {
          r.error = (e as Error).message;
          await sleep(300, att.signal);
        }
      }
    }
    await this.waitWritable(att);
    for (const r of this.replicas.values()) this.markBehind(r);
  }

  override updateRecord(record: ShardRecord): void {
    this.setReplicas(record, record.primary);
  }

  private setReplicas(record: ShardRecord, primary: string): void {
    const want = new Map(record.replicas.filter((n) => n !== primary).map((n) => [n, record.members[n]?.pg ?? ''] as const));
    for (const [node, r] of this.replicas) {
      if (want.get(node) !== r.address) {
        r.closed = true;
        void r.pool.end().catch(() => undefined);
        this.replicas.delete(node);
      }
    }
    for (const [node, address] of want) {
      if (!address || this.replicas.has(node)) continue;
      const pool = new pg.Pool({ ...pgConnection(address, `${this.deps.node}-sync`), max: 4, idleTimeoutMillis: 0, connectionTimeoutMillis: 2_000, query_timeout: 10_000 });
      pool.on('error', () => undefined);
      const r: ReplicaConn = { node, address, pool, behind: false, filling: false, error: null, closed: false };
      this.replicas.set(node, r);
      if (this.ready) this.markBehind(r);
    }
  }

  /** Fill a replica from the primary in the background (idempotent), then count it as in sync. */
  private markBehind(r: ReplicaConn): void {
    r.behind = true;
    if (r.filling) return;
    r.filling = true;
    void (async () => {
      while (!r.closed && r.behind) {
        const att = this.att;
        if (!att || !this.ready) {
          await sleep(500);
          continue;
        }
        try {
          r.behind = false;
          await copyAllVotes(att.target.pool, r.pool, att.signal);
          r.error = null;
        } catch (e) {
          r.behind = true;
          r.error = (e as Error).message;
          await sleep(1_000);
        }
      }
      r.filling = false;
    })();
  }

  async commit(batch: PendingVote[], _primary: PrimaryTarget): Promise<VoteOutcome[]> {
    const att = await this.attached();
    const castAtUs = castAtNow();
    const out = await timed(this.deps, 'primary', this.deps.store.commitBatch(att.target.pool, att.target.epoch, batch, castAtUs));
    const accepted = out.filter((o) => o.status === 'accepted').map((o) => ({ voterId: o.voterId, choice: o.choice, castAtUs }));
    if (accepted.length > 0) {
      await Promise.all(
        [...this.replicas.values()].map(async (r) => {
          try {
            await insertCopies(r.pool, accepted);
          } catch (e) {
            r.error = (e as Error).message;
            this.markBehind(r);
          }
        }),
      );
    }
    return out;
  }

  describe(): ReplicationInfo {
    return {
      mode: 'sync',
      acknowledgedAfter: 'primary commit, then inserted into every reachable replica (no vote log)',
      replicasFed: true,
      ready: this.ready,
      ...(this.ready ? {} : { waitingFor: this.waitingFor }),
      atRisk: 0,
      outbox: null,
      replicas: [...this.replicas.values()].map((r) => ({ node: r.node, available: !r.behind, nextOffset: null, ...(r.error ? { error: r.error } : {}) })),
    };
  }

  override async stop(): Promise<void> {
    await super.stop();
    for (const r of this.replicas.values()) {
      r.closed = true;
      await r.pool.end().catch(() => undefined);
    }
    this.replicas.clear();
  }
}

/** Copy every vote of `from` into `to` (first vote of a voter stays), in voter order, chunk by chunk. */
export async function copyAllVotes(from: pg.Pool, to: pg.Pool, signal?: AbortSignal): Promise<number> {
  let after = -1;
  let copied = 0;
  for (;;) {
    if (signal?.aborted) return copied;
    const r = await from.query<{ ids: number[] | null; choices: number[] | null; casts: number[] | null }>(
      `SELECT array_agg(voter_id ORDER BY voter_id) AS ids, array_agg(choice ORDER BY voter_id) AS choices,
              array_agg((extract(epoch FROM cast_at) * 1000000)::bigint ORDER BY voter_id) AS casts
       FROM (SELECT voter_id, choice, cast_at FROM votes WHERE voter_id > $1 ORDER BY voter_id LIMIT $2) s`,
      [after, COPY_CHUNK],
    );
    const row = r.rows[0];
    const ids = row?.ids ?? [];
    if (ids.length === 0) return copied;
    await insertCopies(
      to,
      ids.map((id, i) => ({ voterId: id, choice: Number(row!.choices![i]), castAtUs: row!.casts![i]! })),
    );
    copied += ids.length;
    after = ids[ids.length - 1]!;
    if (ids.length < COPY_CHUNK) return copied;
  }
}
