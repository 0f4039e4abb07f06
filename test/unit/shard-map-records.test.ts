// The managers' shard records: init converges membership without touching
// the primary or epoch; promote is a compare-and-set on the epoch that fences
// the old primary.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { desiredNodes } from '../../src/core/layout.js';
import {
  convergeShardRecord,
  promote,
  roleIn,
  shardInitRequest,
  type ShardInitShard,
  type ShardRecord,
} from '../../src/core/shard-records.js';
import { validateTopology } from '../../src/core/topology.js';

const NOW = '2026-01-01T00:00:00.000Z';

function want(shard: number, instances: number[]): ShardInitShard {
  return {
    shard,
    service: { name: `shard-${shard}-svc`, http: `svc-${shard}:8080` },
    postgres: instances.map((i) => ({ name: `shard-${shard}-pg-${i}`, instance: i, http: `pg-${shard}-${i}:8080`, pg: `pg-${shard}-${i}:5432` })),
  };
}

describe('shardInitRequest', () => {
  it('lists every shard with its service and PostgreSQL nodes in instance order, with in-cluster addresses', () => {
    const t = validateTopology({ managers: 1, brokers: 0, shards: 2, replicas: 2, replication: 'sync' }).topology!;
    const req = shardInitRequest(t, desiredNodes(t), (n, s, p) => `${n}:${s === 'pg' ? 5432 : p}`);
    expect(req.shards.map((s) => s.shard)).toEqual([1, 2]);
    expect(req.shards[1]!.postgres.map((p) => p.name)).toEqual(['shard-2-pg-1', 'shard-2-pg-2', 'shard-2-pg-3']);
    expect(req.shards[0]!.postgres[0]!.pg).toBe('shard-1-pg-1:5432');
    expect(req.shards[0]!.service.name).toBe('shard-1-svc');
  });
});

describe('convergeShardRecord', () => {
  it('creates a record with instance 1 as primary at epoch 1 and partition shard-1', () => {
    const r = convergeShardRecord(null, want(3, [2, 1, 3]), 'log', NOW)!;
    expect(r).toMatchObject({ shard: 3, epoch: 1, primary: 'shard-3-pg-1', replicas: ['shard-3-pg-2', 'shard-3-pg-3'], fenced: [], partition: 2, topic: 'votes', mode: 'log', service: 'shard-3-svc' });
    expect(r.members['shard-3-pg-2']).toEqual({ http: 'pg-3-2:8080', pg: 'pg-3-2:5432' });
    expect(r.history).toEqual([{ epoch: 1, primary: 'shard-3-pg-1', at: NOW, reason: 'created' }]);
  });

  it('is idempotent: the same request again changes nothing', () => {
    const r = convergeShardRecord(null, want(1, [1, 2]), 'sync', NOW)!;
    expect(convergeShardRecord(r, want(1, [1, 2]), 'sync', '2027-01-01T00:00:00.000Z')).toBeNull();
  });

  it('adds new replicas and drops removed ones, never changing primary, epoch or mode', () => {
    const r = convergeShardRecord(null, want(1, [1, 2]), 'log', NOW)!;
    const promoted = promote(r, 'shard-1-pg-2', 1, 'test', NOW);
    if (!promoted.ok) throw new Error(promoted.problem);
    const up = convergeShardRecord(promoted.record, want(1, [1, 2, 3]), 'async', NOW)!;
    expect(up.primary).toBe('shard-1-pg-2');
    expect(up.epoch).toBe(2);
    expect(up.mode).toBe('log');
    expect(up.replicas).toEqual(['shard-1-pg-3']);
    expect(up.fenced).toEqual(['shard-1-pg-1']); // a fenced copy stays fenced until re-seeded
    const down = convergeShardRecord(up, want(1, [1, 2]), 'log', NOW)!;
    expect(down.replicas).toEqual([]);
    expect(down.primary).toBe('shard-1-pg-2');
    expect(down.members['shard-1-pg-3']).toBeUndefined();
  });

  it('keeps a primary the request no longer names', () => {
    const r = convergeShardRecord(null, want(1, [1, 2, 3]), 'log', NOW)!;
    // nothing to change: the primary and its address stay, the replicas are the same
    expect(convergeShardRecord(r, want(1, [2, 3]), 'log', NOW)).toBeNull();
    const next = convergeShardRecord(r, want(1, [2]), 'log', NOW)!;
    expect(next.primary).toBe('shard-1-pg-1');
    expect(next.members['shard-1-pg-1']).toBeDefined();
    expect(next.replicas).toEqual(['shard-1-pg-2']);
  });
});

describe('promote', () => {
  const rec = (): ShardRecord => convergeShardRecord(null, want(1, [1, 2, 3]), 'log', NOW)!;

  it('makes the replica primary under epoch+1 and fences the old primary', () => {
    const out = promote(rec(), 'shard-1-pg-3', 1, 'primary shard-1-pg-1 dead', NOW);
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect(out.record).toMatchObject({ epoch: 2, primary: 'shard-1-pg-3', replicas: ['shard-1-pg-2'], fenced: ['shard-1-pg-1'] });
    expect(out.record.history.at(-1)).toEqual({ epoch: 2, primary: 'shard-1-pg-3', at: NOW, reason: 'primary shard-1-pg-1 dead' });
    expect(roleIn(out.record, 'shard-1-pg-1')).toBe('fenced');
    expect(roleIn(out.record, 'shard-1-pg-3')).toBe('primary');
    expect(roleIn(out.record, 'shard-1-pg-2')).toBe('replica');
    expect(roleIn(out.record, 'shard-9-pg-1')).toBe('unassigned');
    expect(roleIn(null, 'shard-1-pg-1')).toBe('unassigned');
  });

  it('refuses a stale epoch, a non-replica, the primary itself and a missing record', () => {
    expect(promote(rec(), 'shard-1-pg-2', 2, 'x', NOW)).toMatchObject({ ok: false, status: 409 });
    expect(promote(rec(), 'shard-1-pg-9', 1, 'x', NOW)).toMatchObject({ ok: false, status: 409 });
    expect(promote(rec(), 'shard-1-pg-1', 1, 'x', NOW)).toMatchObject({ ok: false, status: 409 });
    expect(promote(null, 'shard-1-pg-2', 1, 'x', NOW)).toMatchObject({ ok: false, status: 404 });
  });

  it('any sequence of promotions keeps epochs increasing by one and exactly one primary', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 20 }), (picks) => {
        let r = rec();
        for (const p of picks) {
          const out = promote(r, `shard-1-pg-${p}`, r.epoch, 'x', NOW);
          if (!out.ok) continue;
          expect(out.record.epoch).toBe(r.epoch + 1);
          r = out.record;
          const all = [r.primary, ...r.replicas, ...r.fenced];
          expect(new Set(all).size).toBe(all.length);
        }
      }),
      { numRuns: 200 },
    );
  });
});
