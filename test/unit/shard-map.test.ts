// The shard map: voter id -> slot -> shard, for the three kinds. The hash is
// part of the data format (every copy and client must agree forever), so
// golden vectors pin it; a reimplementation in another language must give the
// same numbers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildShardMap,
  checkShardMap,
  describeShardMap,
  fmix32,
  HASH_SLOTS,
  hashSlot,
  ShardRouter,
  slotOf,
  type ShardMap,
} from '../../src/core/shard-map.js';

const MAX_ID = Number.MAX_SAFE_INTEGER;

describe('hashSlot', () => {
  it('matches the golden vectors (stable across versions; also produced by the Python in docs)', () => {
    const golden: [number, number][] = [
      [0, 680],
      [1, 444],
      [2, 137],
      [42, 642],
      [1000, 706],
      [123456789, 392],
      [4294967295, 523],
      [4294967296, 613],
      [9999999999, 319],
      [MAX_ID, 292],
    ];
    for (const [id, slot] of golden) expect(hashSlot(id), `voter ${id}`).toBe(slot);
  });

  it('fmix32 is MurmurHash3 fmix32 (known values)', () => {
    expect(fmix32(0)).toBe(0);
    expect(fmix32(1)).toBe(0x514e28b7);
    expect(fmix32(0xffffffff)).toBe(0x81f16f39);
  });

  it('always gives a slot in 0..1023', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_ID }), (id) => {
        const s = hashSlot(id);
        return Number.isInteger(s) && s >= 0 && s < HASH_SLOTS;
      }),
      { numRuns: 5000 },
    );
  });

  it('uses the high 32 bits of the id (ids 2^32 apart land in different slots mostly)', () => {
    let same = 0;
    for (let i = 1; i <= 2000; i++) if (hashSlot(i) === hashSlot(i + 2 ** 32)) same++;
    expect(same).toBeLessThan(20); // ~2000/1024 expected by chance
  });

  it('spreads consecutive ids evenly over the slots', () => {
    const counts = new Array<number>(HASH_SLOTS).fill(0);
    const n = 200_000;
    for (let i = 1; i <= n; i++) counts[hashSlot(i)]!++;
    const mean = n / HASH_SLOTS;
    // 5 standard deviations of a binomial count around the mean
    const sd = Math.sqrt(mean);
    expect(Math.min(...counts)).toBeGreaterThan(mean - 5 * sd);
    expect(Math.max(...counts)).toBeLessThan(mean + 5 * sd);
  });
});

describe('buildShardMap', () => {
  it('hash: contiguous ranges covering every slot once, sizes differing by at most one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: HASH_SLOTS }), (shards) => {
        const m = buildShardMap('hash', shards);
        expect(checkShardMap(m)).toEqual([]);
        expect(m.ranges).toHaveLength(shards);
        let next = 0;
        for (const [i, r] of m.ranges.entries()) {
          expect(r.shard).toBe(i + 1);
          expect(r.first).toBe(next);
          next = r.last + 1;
        }
        expect(next).toBe(HASH_SLOTS);
        const sizes = m.ranges.map((r) => r.last - r.first + 1);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 80 },
    );
  });

  it('hash over 2 shards splits at slot 512; over 3 at 342 and 683', () => {
    expect(buildShardMap('hash', 2).ranges).toEqual([
      { first: 0, last: 511, shard: 1 },
      { first: 512, last: 1023, shard: 2 },
    ]);
    expect(buildShardMap('hash', 3).ranges.map((r) => r.first)).toEqual([0, 342, 683]);
  });

  it('parity and last-digit need exactly 2 and 10 shards', () => {
    expect(() => buildShardMap('parity', 3)).toThrow(/exactly 2/);
    expect(() => buildShardMap('last-digit', 2)).toThrow(/exactly 10/);
    expect(() => buildShardMap('hash', 0)).toThrow(/at least 1/);
    expect(() => buildShardMap('hash', HASH_SLOTS + 1)).toThrow(/cannot share/);
  });
});

describe('ShardRouter', () => {
  it('parity: even ids -> shard 1, odd ids -> shard 2 (the original DisVote rule)', () => {
    const r = new ShardRouter(buildShardMap('parity', 2));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_ID }), (id) => r.shardOf(id) === (id % 2 === 0 ? 1 : 2)),
      { numRuns: 2000 },
    );
    expect([2, 4, 10, 9999999998].map((i) => r.shardOf(i))).toEqual([1, 1, 1, 1]);
    expect([1, 3, 11, 9999999999].map((i) => r.shardOf(i))).toEqual([2, 2, 2, 2]);
  });

  it('last-digit: id ending in d -> shard d+1 (the report\'s ten-shard proposal)', () => {
    const r = new ShardRouter(buildShardMap('last-digit', 10));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_ID }), (id) => r.shardOf(id) === (id % 10) + 1),
      { numRuns: 2000 },
    );
    expect(r.shardOf(1230)).toBe(1);
    expect(r.shardOf(1239)).toBe(10);
  });

  it('hash: shard = floor(slot * S / 1024) + 1, for every shard count', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: MAX_ID }), (shards, id) => {
        const r = new ShardRouter(buildShardMap('hash', shards));
        return r.shardOf(id) === Math.floor((hashSlot(id) * shards) / HASH_SLOTS) + 1 && r.slotOf(id) === slotOf('hash', id);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses maps with gaps, overlaps or foreign shards', () => {
    const base = buildShardMap('hash', 2);
    const gap: ShardMap = { ...base, ranges: [{ first: 0, last: 500, shard: 1 }, { first: 512, last: 1023, shard: 2 }] };
    const overlap: ShardMap = { ...base, ranges: [{ first: 0, last: 600, shard: 1 }, { first: 512, last: 1023, shard: 2 }] };
    const foreign: ShardMap = { ...base, ranges: [{ first: 0, last: 511, shard: 1 }, { first: 512, last: 1023, shard: 3 }] };
    expect(checkShardMap(gap).join()).toMatch(/slot 501 belongs to no shard/);
    expect(checkShardMap(overlap).join()).toMatch(/slot 512 is given to shards 1 and 2/);
    expect(checkShardMap(foreign).join()).toMatch(/shard 3 is not within 1..2/);
    expect(() => new ShardRouter(gap)).toThrow(/invalid shard map/);
  });

  it('a moved slot range routes its voters to the new shard (maps are data)', () => {
    const m = buildShardMap('hash', 2);
    const moved: ShardMap = { ...m, ranges: [{ first: 0, last: 99, shard: 2 }, { first: 100, last: 511, shard: 1 }, { first: 512, last: 1023, shard: 2 }] };
    const r = new ShardRouter(moved);
    const id = Array.from({ length: 10_000 }, (_, i) => i + 1).find((i) => hashSlot(i) < 100)!;
    expect(r.shardOf(id)).toBe(2);
  });

  it('describes each kind for people', () => {
    expect(describeShardMap(buildShardMap('parity', 2))).toEqual(['shard 1: even voter ids', 'shard 2: odd voter ids']);
    expect(describeShardMap(buildShardMap('last-digit', 10))[3]).toBe('shard 4: voter ids ending in 3');
    expect(describeShardMap(buildShardMap('hash', 2))[1]).toBe('shard 2: hash slots 512-1023 of 1024');
  });
});
