// The schema against a real PostgreSQL: a copy made by schema version 2 (one
// outbox row per vote) is converted at start to one row per batch, without
// losing a vote that was still in its outbox, and the schema stays
// idempotent.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgConnection, SCHEMA_SQL, SCHEMA_VERSION } from '../../src/services/postgres/pg-schema.js';
import { startTempPostgres, type TempPostgres } from '../utils/temp-postgres.js';

let db: TempPostgres;
let c: pg.Client;

beforeAll(async () => {
  db = await startTempPostgres();
  const admin = new pg.Client(pgConnection(db.address, 'test'));
  await admin.connect();
  await admin.query('CREATE DATABASE v2copy');
  await admin.end();
  c = new pg.Client({ ...pgConnection(db.address, 'test'), database: 'v2copy' });
  await c.connect();
}, 60_000);

afterAll(async () => {
  await c?.end().catch(() => undefined);
  await db?.stop();
});

/** The outbox as schema version 2 made it. */
const V2_OUTBOX = `
CREATE TABLE outbox (
  id       bigserial PRIMARY KEY,
  epoch    bigint NOT NULL,
  voter_id bigint NOT NULL,
  choice   smallint NOT NULL,
  cast_at  timestamptz NOT NULL
);
CREATE INDEX outbox_voter ON outbox (voter_id);
ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX outbox_xid ON outbox (xid, id);`;

describe('schema version 3', () => {
  it('converts a version-2 outbox (a row per vote) into a row per batch, keeping order and exact cast times', async () => {
    await c.query(V2_OUTBOX);
    const t1 = 1_700_000_000_123_456;
    const t2 = 1_700_000_000_223_456;
    const ts = (us: number) => `timestamptz 'epoch' + ${us}::bigint * interval '1 microsecond'`;
    // two batches (transactions), the first with three votes, the second with one
    await c.query(`INSERT INTO outbox (epoch, voter_id, choice, cast_at) VALUES (4, 30, 1, ${ts(t1)}), (4, 10, 2, ${ts(t1)}), (4, 20, 3, ${ts(t1)})`);
    await c.query(`INSERT INTO outbox (epoch, voter_id, choice, cast_at) VALUES (5, 40, 2, ${ts(t2)})`);
    await c.query(SCHEMA_SQL);
    const rows = await c.query('SELECT epoch, cast_us, voter_ids, choices FROM outbox ORDER BY xid, id');
    expect(rows.rows).toEqual([
      { epoch: 4, cast_us: t1, voter_ids: [30, 10, 20], choices: [1, 2, 3] },
      { epoch: 5, cast_us: t2, voter_ids: [40], choices: [2] },
    ]);
    expect((await c.query(`SELECT to_regclass('outbox_per_vote') AS t`)).rows[0].t).toBeNull();
    expect((await c.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows[0].value).toBe(String(SCHEMA_VERSION));
    // running it again changes nothing
    await c.query(SCHEMA_SQL);
    expect((await c.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n).toBe(2);
    const idx = await c.query(`SELECT indexname FROM pg_indexes WHERE tablename = 'outbox' ORDER BY 1`);
    expect(idx.rows.map((r) => r.indexname)).toEqual(['outbox_cast', 'outbox_pkey', 'outbox_xid']);
  });

  it('refuses an outbox row whose arrays disagree or are empty', async () => {
    await expect(c.query(`INSERT INTO outbox (epoch, cast_us, voter_ids, choices) VALUES (1, 1, '{1,2}', '{1}')`)).rejects.toThrow(/check constraint/);
    await expect(c.query(`INSERT INTO outbox (epoch, cast_us, voter_ids, choices) VALUES (1, 1, '{}', '{}')`)).rejects.toThrow(/check constraint/);
  });
});
