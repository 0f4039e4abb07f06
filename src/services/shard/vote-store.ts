// The SQL of the vote path, against one PostgreSQL copy (the primary).
//
// A batch is ONE statement (one round trip, one transaction, one WAL flush):
// the votes go in as two arrays; the fence is checked once (an InitPlan that
// holds the fence's shared lock until commit); new votes are inserted with
// ON CONFLICT DO NOTHING and, in the same transaction, the ones inserted go
// to the outbox as one row for the batch (none when nothing was inserted);
// the reply names, per vote, whether it was inserted and the choice stored
// for that voter (the first vote, for a duplicate).
//
// The statement is prepared once per connection (parsed once) and its
// generic plan is cached, on connections with sequential scans off (the
// shard service's, primary-connection.ts): a cached plan is kept while the
// table grows from nothing to millions of rows without an ANALYZE in between
// (seen: a plan made at 1,947 rows scanned the whole table for every batch,
// and throughput fell as the table grew). Planning at every execution
// instead (plan_cache_mode = force_custom_plan, until revision 9d639a2) was
// safe but cost ~40 % of the batch's CPU on the primary (bench/plan-cost.ts).
// The stored vote of a voter that was not inserted is read by a LATERAL
// lookup with LIMIT 1: a primary-key probe per vote that was not inserted,
// skipped for the votes that were (a join let the planner pick a hash join
// over the whole table for large batches).
//
// The cast time is chosen by the shard service, one per batch, in
// microseconds and strictly increasing for the process (castAtNow), and
// passed in, so that the copy of a vote in the vote log, appended in parallel,
// carries the same time as the primary's row. It also tells a vote apart
// from an earlier one: the primary's own applier may insert a vote from the
// log before the batch that wrote it commits (the log can be faster), and
// the batch then finds "its" row already there. A stored row with this
// batch's exact cast time and the same choice is this vote: accepted.
import type pg from 'pg';
import { FENCE_ERRORS } from '../postgres/pg-schema.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';

/** SQL for a timestamptz from a bigint parameter in microseconds since 1970 (exact, unlike float seconds). */
export const fromMicros = (param: string) => `(timestamptz 'epoch' + ${param}::bigint * interval '1 microsecond')`;

let lastCastAtUs = 0;
/** A cast time in microseconds since 1970: now, but strictly later than the previous one of this process. */
export function castAtNow(): number {
  const now = Math.round((performance.timeOrigin + performance.now()) * 1000);
  lastCastAtUs = Math.max(now, lastCastAtUs + 1);
  return lastCastAtUs;
}

export const BATCH_SQL = (withOutbox: boolean) => `
WITH v AS (
  SELECT * FROM unnest($2::bigint[], $3::smallint[]) WITH ORDINALITY AS v(voter_id, choice, ord)
), ins AS (
  INSERT INTO votes (voter_id, choice, cast_at)
  SELECT voter_id, choice, ${fromMicros('$4')} FROM v WHERE (SELECT dvote_assert_writable($1::bigint))
  ON CONFLICT (voter_id) DO NOTHING
  RETURNING voter_id, choice, cast_at
)${
  withOutbox
    ? `, ob AS (
  INSERT INTO outbox (epoch, cast_us, voter_ids, choices)
  SELECT $1::bigint, $4::bigint, array_agg(voter_id), array_agg(choice) FROM ins HAVING count(*) > 0
)`
    : ''
}
SELECT v.voter_id,
       ins.voter_id IS NOT NULL OR (old.choice = v.choice AND old.cast_at = ${fromMicros('$4')}) AS inserted,
       COALESCE(ins.choice, old.choice) AS choice, COALESCE(ins.cast_at, old.cast_at) AS cast_at
FROM v
LEFT JOIN ins ON ins.voter_id = v.voter_id
LEFT JOIN LATERAL (
  SELECT o.choice, o.cast_at FROM votes o WHERE ins.voter_id IS NULL AND o.voter_id = v.voter_id LIMIT 1
) old ON true
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
  /** Name of the prepared statement (parsed and planned once per connection). */
  private readonly batchName: string;
  /** Votes read again because a row committed after the batch's snapshot conflicted (see commitBatch). */
  rechecked = 0;

  constructor(opts: { outbox: boolean }) {
    this.batchSql = BATCH_SQL(opts.outbox);
    this.batchName = opts.outbox ? 'dvote-vote-batch-outbox' : 'dvote-vote-batch';
  }

  /** Commit votes (no voter twice) on a primary at `epoch`, cast at `castAtUs` (microseconds since 1970; default: now). */
  async commitBatch(db: pg.Pool | pg.ClientBase, epoch: number, votes: PendingVote[], castAtUs: number = castAtNow()): Promise<VoteOutcome[]> {
    const ids = votes.map((v) => v.voterId);
    if (new Set(ids).size !== ids.length) throw new Error('a batch must not hold a voter twice (same-voter votes are serialized)');
    let rows: BatchRow[];
    try {
      const r = await db.query<BatchRow>({ name: this.batchName, text: this.batchSql, values: [epoch, ids, votes.map((v) => v.choice), castAtUs] });
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
    // A conflict with a row committed after this statement's snapshot (the
    // primary's applier inserting this very vote from the log, or another
    // writer) is read again, fresh: all of the batch's such votes in one
    // statement (the log is often faster than the primary's commit, so under
    // load a batch can have hundreds of them).
    if (missing.length > 0) {
      this.rechecked += missing.length;
      // (not prepared: rare, and planned with the table's current size)
      const r = await db.query<{ voter_id: number; choice: number; cast_at: Date; cast_us: number }>(
        'SELECT voter_id, choice, cast_at, (extract(epoch FROM cast_at) * 1000000)::bigint AS cast_us FROM votes WHERE voter_id = ANY($1::bigint[])',
        [missing.map((i) => votes[i]!.voterId)],
      );
      const stored = new Map(r.rows.map((row) => [row.voter_id, row]));
      for (const i of missing) {
        const first = stored.get(votes[i]!.voterId);
        if (!first) throw new Error(`voter ${votes[i]!.voterId} conflicted but has no stored vote`);
        // this very vote (stored by the applier from the log): same choice, this batch's exact cast time
        const mine = first.choice === votes[i]!.choice && first.cast_us === castAtUs;
        out[i] = { ...out[i]!, status: mine ? 'accepted' : 'duplicate', choice: first.choice, castAt: first.cast_at.toISOString() };
      }
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

/**
 * Insert votes into a copy that is not the primary (sync mode without a vote
 * log writes the replicas directly): no fence, no outbox, the first vote of a
 * voter stays.
 */
export async function insertCopies(db: pg.Pool | pg.ClientBase, votes: { voterId: number; choice: number; castAtUs: number }[]): Promise<number> {
  if (votes.length === 0) return 0;
  const r = await db.query(
    `INSERT INTO votes (voter_id, choice, cast_at)
     SELECT v.voter_id, v.choice, ${fromMicros('v.us')}
     FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) AS v(voter_id, choice, us)
     ON CONFLICT (voter_id) DO NOTHING`,
    [votes.map((v) => v.voterId), votes.map((v) => v.choice), votes.map((v) => v.castAtUs)],
  );
  return r.rowCount ?? 0;
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
