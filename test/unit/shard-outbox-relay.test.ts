// The outbox relay against a real PostgreSQL: rows committed out of id order
// by concurrent vote batches are all shipped, each exactly once, and the
// at-risk count is what is in the outbox and not yet shipped.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/services/common/logger.js';
import { setFence } from '../../src/services/postgres/pg-schema.js';
import { OutboxRelay } from '../../src/services/shard/outbox-relay.js';
import { decodeEntry } from '../../src/services/shard/vote-log-codec.js';
import type { VoteLogWriter } from '../../src/services/shard/vote-log.js';
import { VoteStore } from '../../src/services/shard/vote-store.js';
import { startTempPostgres, type TempPostgres } from '../utils/temp-postgres.js';

let db: TempPostgres;
let pool: pg.Pool;

beforeAll(async () => {
  db = await startTempPostgres();
  pool = db.pool(12);
  const c = await pool.connect();
  await setFence(c, 'primary', 1);
  c.release();
}, 60_000);

afterAll(async () => {
  await db?.stop();
});

/** A vote log that records what was appended (and can be made slow). */
function fakeWriter(delayMs: () => number): { writer: VoteLogWriter; shipped: number[][] } {
  const shipped: number[][] = [];
  const writer = {
    writer: 7,
    producer: () => 'test.r1',
    append: async (values: Uint8Array[]) => {
      await new Promise((r) => setTimeout(r, delayMs()));
      shipped.push(values.map((v) => (decodeEntry(v) as { voterId: number }).voterId));
      return { firstOffset: 0, lastOffset: values.length - 1 };
    },
  } as unknown as VoteLogWriter;
  return { writer, shipped };
}

describe('OutboxRelay (continuous)', () => {
  it('ships every committed row once although ids commit out of order, and counts what is at risk', async () => {
    const store = new VoteStore({ outbox: true });
    const { writer, shipped } = fakeWriter(() => Math.random() * 3);
    const relay = new OutboxRelay('continuous', writer, createLogger('test', 'warn'));
    const ctrl = new AbortController();
    await relay.attach({ pool, epoch: 1, signal: ctrl.signal, barrier: async () => undefined });
    // 40 senders, each committing batches of 1-5 new voters: ids are handed
    // out at insert and often commit after higher ones.
    let next = 1;
    await Promise.all(
      Array.from({ length: 40 }, async () => {
        for (let k = 0; k < 25; k++) {
          const n = 1 + Math.floor(Math.random() * 5);
          const batch = Array.from({ length: n }, () => ({ voterId: next++, choice: 1 }));
          const out = await store.commitBatch(pool, 1, batch);
          relay.noteAccepted(out.filter((o) => o.status === 'accepted').length);
        }
      }),
    );
    const total = next - 1;
    const deadline = Date.now() + 10_000;
    while (shipped.flat().length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const all = shipped.flat();
    expect(new Set(all).size).toBe(total);
    expect(all.length).toBe(total);
    expect(relay.atRisk()).toBe(0);
    ctrl.abort();
  }, 60_000);

  it('ships each outbox row (one per batch) whole within one append, with its cast time, and counts votes, not rows', async () => {
    await pool.query('TRUNCATE votes, outbox');
    const store = new VoteStore({ outbox: true });
    const appended: { voterId: number; castAtUs: number }[][] = [];
    const writer = {
      writer: 7,
      producer: () => 'test.r2',
      append: async (values: Uint8Array[]) => {
        appended.push(values.map((v) => decodeEntry(v) as { voterId: number; castAtUs: number }));
        return { firstOffset: 0, lastOffset: values.length - 1 };
      },
    } as unknown as VoteLogWriter;
    // three batches of 1,500 new voters and one of 10: more than one append's share (2,000) each
    const casts = [1_700_000_000_000_001, 1_700_000_000_000_002, 1_700_000_000_000_003, 1_700_000_000_000_004];
    const sizes = [1500, 1500, 1500, 10];
    let next = 5_000_000;
    for (const [i, n] of sizes.entries()) {
      await store.commitBatch(pool, 1, Array.from({ length: n }, () => ({ voterId: next++, choice: 2 })), casts[i]);
    }
    const relay = new OutboxRelay('continuous', writer, createLogger('test', 'warn'));
    const ctrl = new AbortController();
    await relay.attach({ pool, epoch: 1, signal: ctrl.signal, barrier: async () => undefined });
    const deadline = Date.now() + 10_000;
    while (appended.flat().length < 4510 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    ctrl.abort();
    // whole rows per append: 1500 | 1500 | 1500 + 10
    expect(appended.map((a) => a.length)).toEqual([1500, 1500, 1510]);
    for (const a of appended) for (const e of a) expect(casts).toContain(e.castAtUs);
    expect(appended[0]!.every((e) => e.castAtUs === casts[0])).toBe(true);
    expect(new Set(appended.flat().map((e) => e.voterId)).size).toBe(4510);
    expect(relay.counters()).toMatchObject({ backlogAtAttach: 4510, shipped: 4510 });
    expect(relay.atRisk()).toBe(0);
    expect(relay.outboxVotes).toBe(4510);
  }, 60_000);
});

