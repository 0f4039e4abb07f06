// The vote path's SQL and group commit against a real PostgreSQL (started by
// the postgres role's own code): the fence, first-vote-wins under concurrent
// load with duplicate voters, the outbox in the same transaction, batching.
import pg from 'pg';
import { pgConnection } from '../../src/services/postgres/pg-schema.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setFence } from '../../src/services/postgres/pg-schema.js';
import { VoteBatcher, type VoteOutcome } from '../../src/services/shard/vote-batcher.js';
import { PRIMARY_SESSION_OPTIONS } from '../../src/services/shard/primary-connection.js';
import { BATCH_SQL, castAtNow, FencedError, tallyOf, VoteStore } from '../../src/services/shard/vote-store.js';
import { startTempPostgres, type TempPostgres } from '../utils/temp-postgres.js';

let db: TempPostgres;
let pool: pg.Pool;

async function fence(role: string, epoch: number): Promise<void> {
  const c = await pool.connect();
  try {
    await setFence(c, role, epoch);
  } finally {
    c.release();
  }
}

beforeAll(async () => {
  db = await startTempPostgres();
  pool = db.pool(12);
}, 60_000);

afterAll(async () => {
  await db?.stop();
});

describe('VoteStore on PostgreSQL', () => {
  const store = new VoteStore({ outbox: true });

  it('refuses writes until the copy is primary at the writer\'s epoch, and stores nothing meanwhile', async () => {
    await expect(store.commitBatch(pool, 1, [{ voterId: 1, choice: 1 }])).rejects.toMatchObject({ name: 'FencedError', code: 'DV001' });
    await fence('primary', 3);
    await expect(store.commitBatch(pool, 2, [{ voterId: 1, choice: 1 }])).rejects.toMatchObject({ name: 'FencedError', code: 'DV002' });
    await fence('replica', 3);
    await expect(store.commitBatch(pool, 3, [{ voterId: 1, choice: 1 }])).rejects.toBeInstanceOf(FencedError);
    const n = await pool.query('SELECT count(*)::int AS n FROM votes');
    expect(n.rows[0].n).toBe(0);
    await fence('primary', 3);
    const [o] = await store.commitBatch(pool, 3, [{ voterId: 1, choice: 2 }]);
    expect(o).toMatchObject({ voterId: 1, status: 'accepted', choice: 2, epoch: 3 });
  });

  it('checks the fence once per batch (an InitPlan), not per row', async () => {
    const r = await pool.query(
      `EXPLAIN INSERT INTO votes (voter_id, choice) SELECT v, 1 FROM unnest($2::bigint[]) v WHERE (SELECT dvote_assert_writable($1::bigint)) ON CONFLICT DO NOTHING`,
      [3, [1, 2, 3]],
    );
    const plan = r.rows.map((x) => x['QUERY PLAN'] as string).join('\n');
    expect(plan).toMatch(/InitPlan/);
    expect(plan).toMatch(/One-Time Filter/);
  });

  it('a duplicate keeps the first choice and stays out of the outbox; a batch of duplicates only adds no outbox row', async () => {
    const before = (await pool.query('SELECT max(id)::int AS id FROM outbox')).rows[0].id as number | null;
    const castAtUs = 1_700_000_000_000_123;
    const out = await store.commitBatch(
      pool,
      3,
      [
        { voterId: 1, choice: 3 },
        { voterId: 2, choice: 3 },
      ],
      castAtUs,
    );
    expect(out[0]).toMatchObject({ status: 'duplicate', choice: 2 });
    expect(out[1]).toMatchObject({ status: 'accepted', choice: 3 });
    const added = await pool.query('SELECT epoch, cast_us, voter_ids, choices FROM outbox WHERE id > $1', [before ?? 0]);
    expect(added.rows).toEqual([{ epoch: 3, cast_us: castAtUs, voter_ids: [2], choices: [3] }]);
    await store.commitBatch(pool, 3, [{ voterId: 2, choice: 1 }]);
    expect((await pool.query('SELECT count(*)::int AS n FROM outbox WHERE id > $1', [before ?? 0])).rows[0].n).toBe(1);
    expect(await store.getVote(pool, 1)).toMatchObject({ choice: 2 });
    expect(await store.getVote(pool, 424242)).toBeNull();
  });

  it('a vote the primary\'s applier inserted from the log before the batch committed (same cast time, same choice) is accepted, not a duplicate', async () => {
    const castAtUs = castAtNow();
    // the applier got there first (the log append was faster than the commit)
    await pool.query(`INSERT INTO votes (voter_id, choice, cast_at) VALUES (77, 2, timestamptz 'epoch' + $1::bigint * interval '1 microsecond')`, [castAtUs]);
    const out = await store.commitBatch(pool, 3, [{ voterId: 77, choice: 2 }, { voterId: 78, choice: 1 }], castAtUs);
    expect(out.map((o) => o.status)).toEqual(['accepted', 'accepted']);
    // an earlier vote of the voter (another cast time) stays a duplicate
    const later = await store.commitBatch(pool, 3, [{ voterId: 77, choice: 2 }], castAtNow());
    expect(later[0]).toMatchObject({ status: 'duplicate', choice: 2 });
    // cast times are strictly increasing within a process
    const a = castAtNow();
    expect(castAtNow()).toBeGreaterThan(a);
  });

  it('refuses a batch holding one voter twice (the batcher never builds one)', async () => {
    await expect(store.commitBatch(pool, 3, [{ voterId: 5, choice: 1 }, { voterId: 5, choice: 2 }])).rejects.toThrow(/voter twice/);
  });

  it('votes the applier commits while the batch waits on them are read again, in one statement: its own vote accepted, another choice a duplicate', async () => {
    const castAtUs = 1_700_000_000_000_777;
    const ts = `timestamptz 'epoch' + ${castAtUs}::bigint * interval '1 microsecond'`;
    // the primary's applier, inserting two of the batch's voters from the log: 700 as this batch's own vote, 701 with another choice
    const applier = await pool.connect();
    await applier.query('BEGIN');
    await applier.query(`INSERT INTO votes (voter_id, choice, cast_at) VALUES (700, 2, ${ts}), (701, 3, ${ts})`);
    const before = store.rechecked;
    const batch = store.commitBatch(
      pool,
      3,
      [
        { voterId: 700, choice: 2 },
        { voterId: 701, choice: 1 },
        { voterId: 702, choice: 1 },
      ],
      castAtUs,
    );
    // the batch's snapshot is taken; it now waits on the uncommitted rows
    await new Promise((r) => setTimeout(r, 300));
    await applier.query('COMMIT');
    applier.release();
    const out = await batch;
    expect(out.map((o) => [o.voterId, o.status, o.choice])).toEqual([
      [700, 'accepted', 2],
      [701, 'duplicate', 3],
      [702, 'accepted', 1],
    ]);
    expect(store.rechecked - before).toBe(2);
    const ob = await pool.query('SELECT voter_ids FROM outbox WHERE cast_us = $1', [castAtUs]);
    expect(ob.rows).toEqual([{ voter_ids: [702] }]);
  });

  it('with the shard service\'s session settings, the generic plan cached on an empty table still probes the primary key after it grew (no ANALYZE between); with the defaults it would scan the table', async () => {
    await fence('primary', 3);
    const c = await pool.connect();
    try {
      await c.query('ALTER TABLE votes SET (autovacuum_enabled = false)');
      await c.query('CREATE TEMP TABLE small_copy AS SELECT * FROM votes');
      // The batch prepared on the empty table and its generic plan cached
      // (the worst case of the default plan_cache_mode, auto), then the
      // table grown to 50,000 votes with no ANALYZE in between.
      const cacheOnEmptyThenGrow = async () => {
        await c.query('DEALLOCATE batch').catch(() => undefined); // (not ALL: node-pg tracks its own prepared statements on this client)
        await c.query('TRUNCATE votes, outbox');
        await c.query('ANALYZE votes');
        await c.query('SET plan_cache_mode = force_generic_plan');
        await c.query(`PREPARE batch(bigint, bigint[], smallint[], bigint) AS ${BATCH_SQL(true)}`);
        await c.query('BEGIN');
        await c.query('EXECUTE batch(3, ARRAY[1]::bigint[], ARRAY[1]::smallint[], 1)');
        await c.query('ROLLBACK');
        await c.query(`INSERT INTO votes (voter_id, choice) SELECT g, 1 + g % 3 FROM generate_series(1, 50000) g`);
      };
      await cacheOnEmptyThenGrow();
      const explain = async (n: number) => {
        const ids = Array.from({ length: n }, (_, i) => 60_001 + i);
        const r = await c.query(`EXPLAIN EXECUTE batch(3, ARRAY[${ids.join(',')}]::bigint[], array_fill(1::smallint, ARRAY[${n}]), 1)`);
        return r.rows.map((x) => x['QUERY PLAN'] as string).join('\n');
      };
      // the trap: the cached generic plan made on the empty table
      expect(await explain(2)).toMatch(/Seq Scan on votes/);
      // the same, with the shard service's session settings (primary-connection.ts)
      for (const o of PRIMARY_SESSION_OPTIONS.matchAll(/-c (\w+)=(\w+)/g)) await c.query(`SET ${o[1]} = ${o[2]}`);
      await cacheOnEmptyThenGrow();
      for (const n of [2, 100, 1000]) {
        const plan = await explain(n);
        expect(plan, `batch of ${n}`).not.toMatch(/Seq Scan on votes/);
        expect(plan, `batch of ${n}`).toMatch(/Index Scan using votes_pkey on votes o/);
      }
    } finally {
      await c.query('DEALLOCATE batch').catch(() => undefined);
      await c.query('RESET enable_seqscan').catch(() => undefined);
      await c.query('RESET plan_cache_mode').catch(() => undefined);
      await c.query('TRUNCATE votes, outbox').catch(() => undefined);
      await c.query('INSERT INTO votes SELECT * FROM small_copy').catch(() => undefined);
      await c.query('DROP TABLE IF EXISTS small_copy').catch(() => undefined);
      await c.query('ALTER TABLE votes RESET (autovacuum_enabled)').catch(() => undefined);
      c.release();
    }
  });

  it('without an outbox (no vote log) only votes are written', async () => {
    const plain = new VoteStore({ outbox: false });
    const before = (await pool.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n as number;
    await plain.commitBatch(pool, 3, [{ voterId: 9_999_999_999, choice: 1 }]);
    expect((await pool.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n).toBe(before);
    expect(await plain.getVote(pool, 9_999_999_999)).toMatchObject({ choice: 1 });
  });
});

describe('group commit under concurrent load with 1% duplicate voters', () => {
  it('counts each voter once with their first choice; duplicates answer with that first choice', async () => {
    await pool.query('TRUNCATE votes, outbox');
    await fence('primary', 4);
    const store = new VoteStore({ outbox: true });
    const batcher = new VoteBatcher((b) => store.commitBatch(pool, 4, b), { maxInFlight: 4, maxBatch: 500 });
    const voters = 4000;
    const base = 1_000_000;
    // 1% of the requests re-vote an earlier voter, with another choice, mixed into the stream
    const requests: { voterId: number; choice: number }[] = [];
    for (let i = 0; i < voters; i++) {
      requests.push({ voterId: base + i, choice: 1 + (i % 3) });
      if (i % 100 === 99) requests.push({ voterId: base + i - 50, choice: 1 + ((i - 50 + 1) % 3) }); // never the first choice
    }
    // 64 concurrent clients, each sending its share one vote at a time
    const outcomes: VoteOutcome[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < requests.length) {
          const r = requests[next++]!;
          outcomes.push(await batcher.submit(r));
        }
      }),
    );
    const ms = performance.now() - t0;
    const accepted = outcomes.filter((o) => o.status === 'accepted');
    const dups = outcomes.filter((o) => o.status === 'duplicate');
    expect(accepted).toHaveLength(voters);
    expect(dups).toHaveLength(requests.length - voters);
    const firstChoice = new Map(accepted.map((o) => [o.voterId, o.choice]));
    for (const d of dups) expect(d.choice).toBe(firstChoice.get(d.voterId));
    const rows = await pool.query<{ voter_id: number; choice: number }>('SELECT voter_id, choice FROM votes');
    expect(rows.rowCount).toBe(voters);
    for (const r of rows.rows) expect(r.choice).toBe(firstChoice.get(r.voter_id));
    const t = await tallyOf(pool);
    expect(t.total).toBe(voters);
    const outbox = await pool.query('SELECT count(*)::int AS n, count(DISTINCT x)::int AS d FROM outbox, unnest(voter_ids) x WHERE epoch = 4');
    expect(outbox.rows[0]).toEqual({ n: voters, d: voters });
    const s = batcher.stats();
    // one outbox row per batch that stored something, not one per vote
    const outboxRows = (await pool.query('SELECT count(*)::int AS n FROM outbox WHERE epoch = 4')).rows[0].n as number;
    expect(outboxRows).toBeLessThanOrEqual(s.batches);
    expect(s.largestBatch).toBeGreaterThan(1);
    console.log(`${requests.length} votes (64 clients, one vote per request) in ${ms.toFixed(0)} ms = ${Math.round((requests.length / ms) * 1000)}/s; ${s.batches} batches, largest ${s.largestBatch}`);
  }, 60_000);

  it('changing the fence waits for batches in flight; batches after it are refused', async () => {
    const store = new VoteStore({ outbox: false });
    const holder = await pool.connect();
    try {
      // a write transaction that has passed the fence and not yet committed
      await holder.query('BEGIN');
      await holder.query(`INSERT INTO votes (voter_id, choice) SELECT 777, 1 WHERE (SELECT dvote_assert_writable(4))`);
      let fenced = false;
      const fencing = fence('fenced', 5).then(() => (fenced = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(fenced).toBe(false); // waits for the open batch
      await holder.query('COMMIT');
      await fencing;
      await expect(store.commitBatch(pool, 4, [{ voterId: 778, choice: 1 }])).rejects.toMatchObject({ code: 'DV001' });
      expect(await store.getVote(pool, 777)).not.toBeNull();
      expect(await store.getVote(pool, 778)).toBeNull();
    } finally {
      holder.release();
    }
  });

  it('the service\'s connections (sequential scans off) still scan the table for the tally, which has no other way', async () => {
    const service = new pg.Pool({ ...pgConnection(db.address, 'test-service'), options: PRIMARY_SESSION_OPTIONS, max: 1 });
    try {
      const c = await service.connect();
      const seen = (await c.query<{ s: string }>("SELECT current_setting('enable_seqscan') AS s")).rows[0]!.s;
      const plan = (await c.query('EXPLAIN SELECT choice, count(*)::bigint AS n FROM votes GROUP BY choice')).rows.map((x) => x['QUERY PLAN']).join('\n');
      c.release();
      expect(seen).toBe('off');
      expect(plan).toMatch(/Seq Scan on votes/);
      const expected = await tallyOf(pool);
      expect(expected.total).toBeGreaterThan(0);
      expect(await new VoteStore({ outbox: true }).tally(service)).toEqual(expected);
    } finally {
      await service.end();
    }
  });
});
