// The SQL of the vote path, against one PostgreSQL copy (the primary).
//
// A batch is ONE statement (one round trip, one transaction, one WAL flush):
// the votes go in as two arrays; the fence is checked once (an InitPlan that
// holds the fence's shared lock until commit); new votes are inserted with
// ON CONFLICT DO NOTHING and, in the same transaction, copied to the outbox;
// the reply names, per vote, whether it was inserted and the choice stored
// for that voter (the first vote, for a duplicate).
import type pg from 'pg';
import { FENCE_ERRORS } from '../postgres/pg-schema.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';

const BATCH_SQL = (withOutbox: boolean) => `
WITH v AS (
  SELECT * FROM unnest($2::bigint[], $3::smallint[]) WITH ORDINALITY AS v(voter_id, choice, ord)
), ins AS (
  INSERT INTO votes (voter_id, choice)
  SELECT voter_id, choice FROM v WHERE (SELECT dvote_assert_writable($1::bigint))
  ON CONFLICT (voter_id) DO NOTHING
  RETURNING voter_id, choice, cast_at
)${
  withOutbox
    ? `, ob AS (
  INSERT INTO outbox (epoch, voter_id, choice, cast_at)
  SELECT $1::bigint, voter_id, choice, cast_at FROM ins
)`
    : ''
}
SELECT v.voter_id, ins.voter_id IS NOT NULL AS inserted,
       COALESCE(ins.choice, old.choice) AS choice, COALESCE(ins.cast_at, old.cast_at) AS cast_at
FROM v
LEFT JOIN ins ON ins.voter_id = v.voter_id
LEFT JOIN votes old ON old.voter_id = v.voter_id
ORDER BY v.ord`;

interface BatchRow {
  voter_id: number;
  inserted: boolean;
  choice: number | null;
  cast_at: Date | null;
}

/** The copy refused the write: not the primary, or another epoch. Retryable after the shard record changes. */
export class FencedError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'FencedError';
  }
}

export function isFenceError(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === FENCE_ERRORS.notPrimary || code === FENCE_ERRORS.wrongEpoch;
}

export class VoteStore {
  private readonly batchSql: string;

  constructor(opts: { outbox: boolean }) {
    this.batchSql = BATCH_SQL(opts.outbox);
  }

  /** Commit votes (no voter twice) on a primary at `epoch`. */
  async commitBatch(db: pg.Pool | pg.ClientBase, epoch: number, votes: PendingVote[]): Promise<VoteOutcome[]> {
    const ids = votes.map((v) => v.voterId);
    if (new Set(ids).size !== ids.length) throw new Error('a batch must not hold a voter twice (same-voter votes are serialized)');
    let rows: BatchRow[];
    try {
      const r = await db.query<BatchRow>({ text: this.batchSql, values: [epoch, ids, votes.map((v) => v.choice)] });
      rows = r.rows;
    } catch (e) {
      if (isFenceError(e)) throw new FencedError((e as Error).message, (e as { code: string }).code);
      throw e;
    }
    if (rows.length !== votes.length) throw new Error(`batch returned ${rows.length} rows for ${votes.length} votes`);
    const out: VoteOutcome[] = [];
    const missing: number[] = [];
    rows.forEach((row, i) => {
      if (row.choice === null) missing.push(i);
      out.push({
        voterId: votes[i]!.voterId,
        status: row.inserted ? 'accepted' : 'duplicate',
        choice: row.choice ?? 0,
        castAt: row.cast_at ? row.cast_at.toISOString() : '',
        epoch,
      });
    });
    // A duplicate whose first vote committed after this statement's snapshot
    // (another writer; not on the normal path) is read again, fresh.
    for (const i of missing) {
      const first = await this.getVote(db, votes[i]!.voterId);
      if (!first) throw new Error(`voter ${votes[i]!.voterId} conflicted but has no stored vote`);
      out[i] = { ...out[i]!, choice: first.choice, castAt: first.castAt };
    }
    return out;
  }

  async getVote(db: pg.Pool | pg.ClientBase, voterId: number): Promise<{ choice: number; castAt: string } | null> {
    const r = await db.query<{ choice: number; cast_at: Date }>('SELECT choice, cast_at FROM votes WHERE voter_id = $1', [voterId]);
    const row = r.rows[0];
    return row ? { choice: row.choice, castAt: row.cast_at.toISOString() } : null;
  }

  /** Votes per ballot position (1-based) and the total. */
  async tally(db: pg.Pool | pg.ClientBase): Promise<{ counts: Map<number, number>; total: number }> {
    return tallyOf(db);
  }
}

/** Votes per stored choice on one copy (also used by `dvote tally` against every copy). */
export async function tallyOf(db: pg.Pool | pg.ClientBase): Promise<{ counts: Map<number, number>; total: number }> {
  const r = await db.query<{ choice: number; n: number }>('SELECT choice, count(*)::bigint AS n FROM votes GROUP BY choice ORDER BY choice');
  const counts = new Map<number, number>();
  let total = 0;
  for (const row of r.rows) {
    counts.set(row.choice, row.n);
    total += row.n;
  }
  return { counts, total };
}
