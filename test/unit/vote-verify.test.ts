// The bench's verifier against real PostgreSQL copies: it passes consistent
// copies, and catches a vote deleted (or altered) behind its back on one
// replica, or missing on the primary.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyVotes, type CopyRef } from '../../src/bench/verify.js';
import { startTempPostgres, type TempPostgres } from '../utils/temp-postgres.js';

let primary: TempPostgres;
let replica: TempPostgres;
let pp: pg.Pool;
let rp: pg.Pool;

beforeAll(async () => {
  [primary, replica] = await Promise.all([startTempPostgres(), startTempPostgres()]);
  pp = primary.pool(2);
  rp = replica.pool(2);
}, 90_000);

afterAll(async () => {
  await Promise.all([primary?.stop(), replica?.stop()]);
});

const N = 500;
const acknowledged = new Map(Array.from({ length: N }, (_, i) => [1000 + i, 1 + (i % 3)] as [number, number]));

async function fill(p: pg.Pool): Promise<void> {
  await p.query('TRUNCATE votes');
  await p.query('INSERT INTO votes (voter_id, choice) SELECT * FROM unnest($1::bigint[], $2::smallint[])', [[...acknowledged.keys()], [...acknowledged.values()]]);
}

function verify() {
  const copies: CopyRef[] = [
    { shard: 1, node: 'shard-1-pg-1', role: 'primary', pgAddress: primary.address },
    { shard: 1, node: 'shard-1-pg-2', role: 'replica', pgAddress: replica.address },
  ];
  return verifyVotes({
    copies,
    acknowledged,
    unknown: new Set(),
    acknowledgedTwice: 0,
    range: { from: 1000, to: 1000 + N },
    shardOf: () => 1,
    settleTimeoutMs: 800,
  });
}

describe('verifyVotes', () => {
  it('passes copies that hold every acknowledged vote once', async () => {
    await Promise.all([fill(pp), fill(rp)]);
    expect(await verify()).toMatchObject({ ok: true, lost: 0, duplicated: 0, divergent: 0 });
  });

  it('catches a vote deleted behind its back on one replica: lost and divergent, tallies disagree', async () => {
    await Promise.all([fill(pp), fill(rp)]);
    await rp.query('DELETE FROM votes WHERE voter_id = 1234');
    const r = await verify();
    expect(r).toMatchObject({ ok: false, lost: 1, lostOnPrimary: 0, divergent: 1 });
    expect(r.copies.find((c) => c.node === 'shard-1-pg-2')).toMatchObject({ missing: 1, votes: N - 1 });
    expect(r.tallies[0]!.agree).toBe(false);
  });

  it('catches a changed choice on a replica and a vote missing on the primary', async () => {
    await Promise.all([fill(pp), fill(rp)]);
    await rp.query('UPDATE votes SET choice = 3 WHERE voter_id = 1000');
    await pp.query('DELETE FROM votes WHERE voter_id = 1001');
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.lostOnPrimary).toBe(1);
    expect(r.divergent).toBe(2);
  });
});
