// A copy's applier and seeding against real PostgreSQL, with an in-memory
// vote log: in order, exactly once across restarts, the barrier rule, outbox
// cleanup on the primary, progress notifications; seeding copies a
// consistent prefix and the applier continues from it.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BrokerClient, FetchResult } from '../../src/client/broker-client.js';
import { createLogger } from '../../src/services/common/logger.js';
import { countMissingOn, resetCopy, seedCopy } from '../../src/services/postgres/copy-seeder.js';
import { APPLIED_CHANNEL, pgConnection, setFence } from '../../src/services/postgres/pg-schema.js';
import { ReplicaApplier } from '../../src/services/postgres/replica-applier.js';
import { encodeBarrier, encodeVote } from '../../src/services/shard/vote-log-codec.js';
import { startTempPostgres, type TempPostgres } from '../utils/temp-postgres.js';

/** The broker's fetch over an array, with long polling. */
class MemoryLog {
  readonly messages: Uint8Array[] = [];
  private waiters: (() => void)[] = [];
  fetches = 0;
  append(...m: Uint8Array[]): void {
    this.messages.push(...m);
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
  client(): BrokerClient {
    return {
      fetch: async (_t: string, _p: number, from: number, o: { maxMessages?: number; waitMs?: number } = {}): Promise<FetchResult> => {
        this.fetches++;
        if (from >= this.messages.length && (o.waitMs ?? 0) > 0) {
          await new Promise<void>((r) => {
            const t = setTimeout(r, o.waitMs);
            this.waiters.push(() => {
              clearTimeout(t);
              r();
            });
          });
        }
        const slice = this.messages.slice(from, from + (o.maxMessages ?? 1000));
        return { messages: slice.map((value, i) => ({ offset: from + i, value })), highWatermark: this.messages.length };
      },
      createTopic: async () => ({ name: 'votes', replicationFactor: 1, partitions: [] }),
    } as unknown as BrokerClient;
  }
}

const W = 77;
const us = (id: number) => 1_800_000_000_000_000 + id;
const v = (id: number, choice: number, epoch = 1, writer = W) => encodeVote({ voterId: id, choice, epoch, writer, castAtUs: us(id) });

let a: TempPostgres;
let b: TempPostgres;
let poolA: pg.Pool;
let poolB: pg.Pool;
const log = createLogger('test', 'warn');

beforeAll(async () => {
  [a, b] = await Promise.all([startTempPostgres(), startTempPostgres()]);
  poolA = a.pool(4);
  poolB = b.pool(4);
}, 90_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

beforeEach(async () => {
  for (const p of [poolA, poolB]) await p.query(`TRUNCATE votes, outbox, applied; DELETE FROM meta WHERE key IN ('copy', 'role', 'epoch', 'seeded_from', 'seeded_at')`);
});

async function votes(p: pg.Pool): Promise<[number, number][]> {
  return (await p.query<{ voter_id: number; choice: number }>('SELECT voter_id, choice FROM votes ORDER BY voter_id')).rows.map((r) => [r.voter_id, r.choice]);
}

async function until(cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function applier(t: TempPostgres, mem: MemoryLog): ReplicaApplier {
  return new ReplicaApplier({ address: t.address, applicationName: 'test', brokers: mem.client(), partition: 0, partitions: 1, log, gatherMs: () => 0 });
}

describe('ReplicaApplier', () => {
  it('applies the log in order, first vote of a voter wins, skips stale entries, records the offset with the votes', async () => {
    const mem = new MemoryLog();
    mem.append(v(1, 1), barrier(1), v(2, 2), v(3, 1), v(2, 3), v(4, 1, 1, 99));
    const ap = applier(a, mem);
    ap.start();
    await until(() => ap.status().nextOffset === 6);
    expect(await votes(poolA)).toEqual([
      [2, 2],
      [3, 1],
    ]);
    const row = (await poolA.query('SELECT next_offset, barrier_epoch, barrier_writer FROM applied')).rows[0];
    expect(row).toEqual({ next_offset: 6, barrier_epoch: 1, barrier_writer: W });
    // cast times are exact to the microsecond
    const t = (await poolA.query<{ us: string }>(`SELECT ((extract(epoch FROM cast_at) * 1000000)::bigint)::text AS us FROM votes WHERE voter_id = 2`)).rows[0]!;
    expect(Number(t.us)).toBe(us(2));
    await ap.stop();
    // more entries while stopped; a new applier continues exactly where the copy is
    mem.append(v(5, 1), v(3, 2), barrier(2), v(6, 1, 1), v(7, 2, 2));
    const again = applier(a, mem);
    again.start();
    await until(() => again.status().nextOffset === 11);
    expect(await votes(poolA)).toEqual([
      [2, 2],
      [3, 1],
      [5, 1],
      [7, 2],
    ]);
    expect(again.status()).toMatchObject({ lag: 0, barrier: { epoch: 2, writer: W }, skipped: 1 });
    await again.stop();
  });

  it('on the primary: deletes the outbox rows of batches met in the log, keeps a vote the primary already has, and notifies its progress', async () => {
    const mem = new MemoryLog();
    await poolA.query(`INSERT INTO votes (voter_id, choice) VALUES (10, 3), (12, 1), (13, 2)`);
    // One row per batch: {10, 12} met in the log with its cast time (its
    // first vote stands for the batch); {11} not in the log; {13} is in the
    // log only with another cast time (another batch's vote of that voter).
    await poolA.query(
      `INSERT INTO outbox (epoch, cast_us, voter_ids, choices) VALUES (1, $1, '{10,12}', '{3,1}'), (1, $2, '{11}', '{1}'), (1, 42, '{13}', '{2}')`,
      [us(10), us(11)],
    );
    const listener = new pg.Client(pgConnection(a.address, 'listen'));
    await listener.connect();
    const seen: string[] = [];
    listener.on('notification', (n) => seen.push(String(n.payload)));
    await listener.query(`LISTEN ${APPLIED_CHANNEL}`);
    const ap = applier(a, mem);
    ap.start();
    mem.append(barrier(1), v(10, 1), v(13, 2));
    await until(() => ap.status().nextOffset === 3);
    expect(await votes(poolA)).toEqual([
      [10, 3],
      [12, 1],
      [13, 2],
    ]);
    expect((await poolA.query('SELECT voter_ids FROM outbox ORDER BY id')).rows).toEqual([{ voter_ids: [11] }, { voter_ids: [13] }]);
    await until(() => seen.includes('3'));
    await ap.stop();
    await listener.end();
  });

  it('waitBarrier resolves when the barrier of an epoch has been applied (a promoted replica replays up to it)', async () => {
    const mem = new MemoryLog();
    const ap = applier(a, mem);
    ap.start();
    const ctrl = new AbortController();
    let done = false;
    const p = ap.waitBarrier(2, ctrl.signal).then((ok) => ((done = true), ok));
    mem.append(barrier(1), v(1, 1));
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    mem.append(barrier(2));
    expect(await p).toBe(true);
    const aborted = new AbortController();
    const q = ap.waitBarrier(5, aborted.signal);
    aborted.abort();
    expect(await q).toBe(false);
    await ap.stop();
  });
});

function barrier(epoch: number): Uint8Array {
  return encodeBarrier({ epoch, writer: W, atMs: 1 });
}

describe('seeding a copy', () => {
  async function fence(p: pg.Pool, role: string, epoch: number) {
    const c = await p.connect();
    await setFence(c, role, epoch);
    c.release();
  }

  it('copies a ready replica exactly (votes, offset, barrier) and the applier continues from there', async () => {
    const mem = new MemoryLog();
    mem.append(barrier(1), ...Array.from({ length: 25_000 }, (_, i) => v(i + 1, 1 + (i % 3))));
    await resetCopy(poolA, 0);
    await fence(poolA, 'replica', 1);
    const src = applier(a, mem);
    src.start();
    await until(() => src.status().nextOffset === 25_001, 30_000);
    await src.stop();
    // the target holds junk that the seed must replace
    await poolB.query(`INSERT INTO votes (voter_id, choice) VALUES (999999, 1)`);
    const r = await seedCopy(poolB, [{ node: 'a', address: a.address, role: 'replica' }], { partition: 0, applicationName: 'test' });
    expect(r).toMatchObject({ source: 'a', votes: 25_000, nextOffset: 25_001 });
    expect(await votes(poolB)).toEqual(await votes(poolA));
    mem.append(v(30_000, 2), v(1, 3));
    const dst = applier(b, mem);
    dst.start();
    await until(() => dst.status().nextOffset === 25_003);
    await dst.stop();
    const got = await votes(poolB);
    expect(got.length).toBe(25_001);
    expect(got.find(([id]) => id === 1)).toEqual([1, 1]);
    expect((await poolB.query(`SELECT value FROM meta WHERE key = 'copy'`)).rows[0]).toEqual({ value: 'ready' });
  }, 60_000);

  it('from the primary, votes still in its outbox (not yet in the log) are left out', async () => {
    await resetCopy(poolA, 0);
    await fence(poolA, 'primary', 1);
    await poolA.query(`INSERT INTO votes (voter_id, choice) VALUES (1, 1), (2, 2), (3, 3)`);
    await poolA.query(`INSERT INTO outbox (epoch, cast_us, voter_ids, choices) VALUES (1, 5, '{3}', '{3}')`);
    const r = await seedCopy(poolB, [{ node: 'a', address: a.address, role: 'primary' }], { partition: 0, applicationName: 'test' });
    expect(r?.votes).toBe(2);
    expect(await votes(poolB)).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  it('refuses sources that are not ready (or not in the role asked), and counts what one copy holds that another lacks', async () => {
    await poolA.query(`INSERT INTO votes (voter_id, choice) VALUES (1, 1), (2, 2), (3, 3)`);
    expect(await seedCopy(poolB, [{ node: 'a', address: a.address, role: 'replica' }], { partition: 0, applicationName: 'test' })).toBeNull();
    await resetCopy(poolB, 0);
    await poolB.query(`INSERT INTO votes (voter_id, choice) VALUES (2, 2)`);
    expect(await countMissingOn(poolA, b.address, 'test')).toEqual({ held: 3, missing: 2 });
  });
});
