// The schema every PostgreSQL copy of a shard holds, and how to connect to it.
// Created (idempotently) by the postgres node at every start.
//
//   votes    one row per voter; the primary key is what makes a vote unique
//   outbox   votes committed on the primary but not yet known to be in the
//            vote log: ONE row per vote batch (the votes it stored, as two
//            arrays, and the batch's cast time, which all its votes share),
//            written in the same transaction as the votes; the relay ships
//            them (services/shard/outbox-relay.ts) and the copy's applier
//            deletes a row when it meets the row's first vote, with the
//            row's cast time, in the log (a batch is appended whole, so
//            the rest is there too). One row per batch, not per vote: the
//            primary wrote, indexed and deleted a second row for every vote
//            (schema version 2 did; version 3 converts such rows).
//            `xid` (the writing transaction) lets the relay read them in
//            commit-safe order: ids are handed out before commit, so a
//            lower id can commit after a higher one
//   applied  per log partition, the next offset the copy's applier will
//            apply, and the latest barrier it met (the vote log's apply rule,
//            see services/shard/vote-log-codec.ts); one row, written in the
//            same transaction as the votes it covers: exactly once per copy
//   meta     this copy's node name, role and epoch (the fence), schema
//            version, and `copy` = 'ready' once the copy holds a consistent
//            prefix of the shard (created empty with the shard, or seeded);
//            a copy without it (a fresh or wiped data directory) never
//            becomes primary by itself (postgres-node.ts)
//
// The fence: dvote_assert_writable(epoch) raises unless this copy is the
// primary at exactly that epoch. Every vote batch calls it once (an InitPlan)
// while holding a shared advisory lock until commit; changing role or epoch
// takes the exclusive lock, so it waits for batches in flight and every later
// batch sees the new values.
import pg from 'pg';

/** The database superuser initdb creates (trust authentication, see pg-server.ts). */
export const PG_USER = 'dvote';
export const PG_DATABASE = 'dvote';
export const SCHEMA_VERSION = 3;
/** Advisory lock key of the fence ("dvote" in ASCII). */
export const FENCE_LOCK_KEY = 0x64766f7465;

/** SQL: the votes in a copy's outbox (column n, bigint): the outbox keeps one row per batch. */
export const OUTBOX_VOTES_SQL = 'SELECT coalesce(sum(cardinality(voter_ids)), 0)::bigint AS n FROM outbox';

/** The channel a copy's applier notifies with its next offset at every commit (LISTEN for sync mode). */
export const APPLIED_CHANNEL = 'dvote_applied';

/** SQLSTATEs the fence raises. */
export const FENCE_ERRORS = {
  notPrimary: 'DV001',
  wrongEpoch: 'DV002',
} as const;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS votes (
  voter_id bigint PRIMARY KEY,
  choice   smallint NOT NULL CHECK (choice >= 1),
  cast_at  timestamptz NOT NULL DEFAULT now()
);
DO $m$
BEGIN
  -- Schema version 2 kept one outbox row per vote: set it aside (converted below).
  IF EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'outbox' AND column_name = 'voter_id') THEN
    ALTER TABLE outbox RENAME TO outbox_per_vote;
    ALTER INDEX outbox_pkey RENAME TO outbox_per_vote_pkey;
    ALTER INDEX IF EXISTS outbox_voter RENAME TO outbox_per_vote_voter;
    ALTER INDEX IF EXISTS outbox_xid RENAME TO outbox_per_vote_xid;
    ALTER SEQUENCE outbox_id_seq RENAME TO outbox_per_vote_id_seq;
    ALTER TABLE outbox_per_vote ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id();
  END IF;
END
$m$;
CREATE TABLE IF NOT EXISTS outbox (
  id        bigserial PRIMARY KEY,
  epoch     bigint NOT NULL,
  cast_us   bigint NOT NULL,
  voter_ids bigint[] NOT NULL,
  choices   smallint[] NOT NULL,
  xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
  CHECK (cardinality(voter_ids) > 0 AND cardinality(voter_ids) = cardinality(choices))
);
-- Arrays of a large batch are stored out of line uncompressed: compressing them costs CPU and saves little.
ALTER TABLE outbox ALTER COLUMN voter_ids SET STORAGE EXTERNAL;
ALTER TABLE outbox ALTER COLUMN choices SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS applied (
  partition   int PRIMARY KEY,
  next_offset bigint NOT NULL CHECK (next_offset >= 0)
);
ALTER TABLE applied ADD COLUMN IF NOT EXISTS barrier_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE applied ADD COLUMN IF NOT EXISTS barrier_writer bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS outbox_cast ON outbox (cast_us);
CREATE INDEX IF NOT EXISTS outbox_xid ON outbox (xid, id);
DO $m$
BEGIN
  IF to_regclass('outbox_per_vote') IS NOT NULL THEN
    -- One row per (transaction, cast time): the votes of one batch.
    INSERT INTO outbox (epoch, cast_us, voter_ids, choices, xid)
      SELECT epoch, (extract(epoch FROM cast_at) * 1000000)::bigint, array_agg(voter_id ORDER BY id), array_agg(choice ORDER BY id), xid
      FROM outbox_per_vote GROUP BY xid, epoch, cast_at ORDER BY xid, min(id);
    DROP TABLE outbox_per_vote;
  END IF;
END
$m$;
CREATE TABLE IF NOT EXISTS meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);
CREATE OR REPLACE FUNCTION dvote_assert_writable(expected_epoch bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  r text;
  e bigint;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(${FENCE_LOCK_KEY});
  SELECT value INTO r FROM meta WHERE key = 'role';
  SELECT value::bigint INTO e FROM meta WHERE key = 'epoch';
  IF r IS DISTINCT FROM 'primary' THEN
    RAISE EXCEPTION 'this PostgreSQL is % (not the primary): writes refused', coalesce(r, 'unassigned')
      USING ERRCODE = '${FENCE_ERRORS.notPrimary}';
  END IF;
  IF e IS DISTINCT FROM expected_epoch THEN
    RAISE EXCEPTION 'this primary is at epoch %, the writer at epoch %: writes refused', coalesce(e::text, 'none'), expected_epoch
      USING ERRCODE = '${FENCE_ERRORS.wrongEpoch}';
  END IF;
  RETURN true;
END
$fn$;
INSERT INTO meta (key, value) VALUES ('schema_version', '${SCHEMA_VERSION}')
  ON CONFLICT (key) DO UPDATE SET value = excluded.value;
INSERT INTO meta (key, value) VALUES ('created_at', now()::text) ON CONFLICT (key) DO NOTHING;
`;

/** Set this copy's role and epoch under the fence's exclusive lock (waits for write batches in flight). */
export async function setFence(client: pg.ClientBase, role: string, epoch: number): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${FENCE_LOCK_KEY})`);
    await client.query(
      `INSERT INTO meta (key, value) VALUES ('role', $1), ('epoch', $2)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [role, String(epoch)],
    );
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

export async function readMeta(client: pg.ClientBase | pg.Pool): Promise<Record<string, string>> {
  const r = await client.query<{ key: string; value: string }>('SELECT key, value FROM meta');
  return Object.fromEntries(r.rows.map((x) => [x.key, x.value]));
}

// bigint columns come back as JS numbers: voter ids and offsets stay below
// 2^53 (the topology caps voter ids at Number.MAX_SAFE_INTEGER).
const int8 = (v: string) => Number(v);
const int8Array = pg.types.getTypeParser(1016 as number) as (v: string) => string[];
const typeParsers: Record<number, (v: string) => unknown> = {
  20: int8,
  1016: (v: string) => int8Array(v).map(Number),
};

/** Type parsers for a pg client/pool config (`types: pgTypes`). */
export const pgTypes = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    typeParsers[oid] ?? (pg.types.getTypeParser as (o: number, f?: string) => (v: string) => unknown)(oid, format),
};

/** Connection settings for a copy at "host:port". */
export function pgConnection(address: string, applicationName: string): pg.PoolConfig {
  const i = address.lastIndexOf(':');
  return {
    host: address.slice(0, i),
    port: Number(address.slice(i + 1)),
    user: PG_USER,
    database: PG_DATABASE,
    application_name: applicationName.slice(0, 63),
    keepAlive: true,
    types: pgTypes as pg.CustomTypesConfig,
  };
}
