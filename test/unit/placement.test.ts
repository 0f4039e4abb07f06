import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assignGroupPartitions,
  balanceLeaders,
  defaultPartitionCount,
  dequeueOrder,
  loadOf,
  placeTopic,
  planReplacements,
  type PartitionPlacement,
} from '../../src/core/placement.js';

const names = (n: number) => Array.from({ length: n }, (_, i) => `broker-${i + 1}`);

function spread(values: number[]): number {
  return Math.max(...values) - Math.min(...values);
}

function counts(brokers: string[], placements: PartitionPlacement[][]) {
  const load = loadOf(brokers, placements);
  return { replicas: brokers.map((b) => load.get(b)!.replicas), leaders: brokers.map((b) => load.get(b)!.leaders) };
}

/** The best possible leader spread given the replica sets (brute force over small inputs). */
function bestLeaderSpread(brokers: string[], parts: PartitionPlacement[]): number {
  let best = Infinity;
  const choice = new Array<number>(parts.length).fill(0);
  const rec = (i: number) => {
    if (i === parts.length) {
      const c = new Map(brokers.map((b) => [b, 0]));
      parts.forEach((p, k) => c.set(p.replicas[choice[k]!]!, c.get(p.replicas[choice[k]!]!)! + 1));
      best = Math.min(best, spread([...c.values()]));
      return;
    }
    for (let k = 0; k < parts[i]!.replicas.length; k++) {
      choice[i] = k;
      rec(i + 1);
    }
  };
  rec(0);
  return best;
}

describe('placeTopic', () => {
  it('places 6 partitions RF 3 on 3 brokers: every broker holds every partition, leaders 2 each', () => {
    const b = names(3);
    const p = placeTopic({ partitions: 6, replicationFactor: 3, brokers: b });
    expect(p.map((x) => x.partition)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const x of p) expect(new Set(x.replicas)).toEqual(new Set(b));
    expect(counts(b, [p]).leaders).toEqual([2, 2, 2]);
  });

  it('is deterministic and never random', () => {
    const b = names(5);
    expect(placeTopic({ partitions: 7, replicationFactor: 3, brokers: b })).toEqual(placeTopic({ partitions: 7, replicationFactor: 3, brokers: [...b].reverse() }));
  });

  it('rejects an RF larger than the broker count, and bad counts', () => {
    expect(() => placeTopic({ partitions: 1, replicationFactor: 4, brokers: names(3) })).toThrow(/needs at least 4 live brokers/);
    expect(() => placeTopic({ partitions: 0, replicationFactor: 1, brokers: names(3) })).toThrow(/positive integer/);
    expect(() => placeTopic({ partitions: 1, replicationFactor: 0, brokers: names(3) })).toThrow(/positive integer/);
  });

  it('property: distinct replicas, RF each, replicas spread <= 1, leaders as even as the replica sets allow', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 7 }), (nb, np, rfRaw) => {
        const b = names(nb);
        const rf = Math.min(rfRaw, nb);
        const p = placeTopic({ partitions: np, replicationFactor: rf, brokers: b });
        expect(p).toHaveLength(np);
        for (const x of p) {
          expect(x.replicas).toHaveLength(rf);
          expect(new Set(x.replicas).size).toBe(rf);
          for (const r of x.replicas) expect(b).toContain(r);
        }
        const c = counts(b, [p]);
        expect(spread(c.replicas)).toBeLessThanOrEqual(1);
        expect(spread(c.leaders)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it('property: many topics placed one after another stay even over all topics (leaders after a global rebalance)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 6 }), (nb, topicSizes) => {
        const b = names(nb);
        const rf = Math.min(3, nb);
        const all: PartitionPlacement[][] = [];
        for (const np of topicSizes) all.push(placeTopic({ partitions: np, replicationFactor: rf, brokers: b, existing: loadOf(b, all) }));
        // The managers rebalance preferred leaders over every topic after a topic is created.
        const c = counts(b, balanceLeaders(all, b));
        expect(spread(c.replicas)).toBeLessThanOrEqual(1);
        expect(spread(c.leaders)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 200 },
    );
  });
});

describe('balanceLeaders', () => {
  it('moves preferred leaders off an overloaded broker', () => {
    const b = names(3);
    const skewed: PartitionPlacement[] = [0, 1, 2].map((partition) => ({ partition, replicas: ['broker-1', 'broker-2', 'broker-3'] }));
    const [out] = balanceLeaders([skewed], b);
    expect(counts(b, [out!]).leaders).toEqual([1, 1, 1]);
    for (const p of out!) expect(new Set(p.replicas)).toEqual(new Set(b));
  });

  it('moves leadership off a broker that is not live', () => {
    const [out] = balanceLeaders([[{ partition: 0, replicas: ['broker-1', 'broker-2', 'broker-3'] }]], ['broker-2', 'broker-3']);
    expect(out![0]!.replicas[0]).not.toBe('broker-1');
  });

  it('property: reaches the optimal leader spread and keeps every replica set', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 5 }).chain((nb) =>
          fc.tuple(
            fc.constant(nb),
            fc.array(fc.shuffledSubarray(names(nb), { minLength: 1, maxLength: Math.min(3, nb) }), { minLength: 1, maxLength: 6 }),
          ),
        ),
        ([nb, sets]) => {
          const b = names(nb);
          const parts = sets.map((replicas, partition) => ({ partition, replicas }));
          const [out] = balanceLeaders([parts], b);
          out!.forEach((p, i) => expect(new Set(p.replicas)).toEqual(new Set(parts[i]!.replicas)));
          const c = new Map(b.map((x) => [x, 0]));
          for (const p of out!) c.set(p.replicas[0]!, c.get(p.replicas[0]!)! + 1);
          expect(spread([...c.values()])).toBe(bestLeaderSpread(b, parts));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('planReplacements', () => {
  it('replaces a gone broker with the live one that is not yet a replica, keeping RF', () => {
    const b = names(4);
    const p = placeTopic({ partitions: 4, replicationFactor: 3, brokers: b });
    const r = planReplacements({ topics: [{ name: 't', partitions: p }], live: b, gone: ['broker-2'] });
    const affected = p.filter((x) => x.replicas.includes('broker-2')).length;
    expect(r.replacements).toHaveLength(affected);
    for (const x of r.topics[0]!.partitions) {
      expect(x.replicas).toHaveLength(3);
      expect(x.replicas).not.toContain('broker-2');
      expect(new Set(x.replicas).size).toBe(3);
    }
    expect(r.underReplicated).toEqual([]);
  });

  it('reports partitions it cannot repair and leaves them as they are', () => {
    const b = names(3);
    const p = placeTopic({ partitions: 2, replicationFactor: 3, brokers: b });
    const r = planReplacements({ topics: [{ name: 't', partitions: p }], live: b, gone: ['broker-3'] });
    expect(r.replacements).toEqual([]);
    expect(r.underReplicated).toEqual([
      { topic: 't', partition: 0 },
      { topic: 't', partition: 1 },
    ]);
    expect(r.topics[0]!.partitions).toEqual(p);
  });

  it('property: after replacement no partition holds a gone broker when enough live ones exist; replicas spread <= 2, leaders optimal', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 7 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3 }), fc.nat(), (nb, np, rfRaw, goneSeed) => {
        const b = names(nb);
        const rf = Math.min(rfRaw, nb);
        const p = placeTopic({ partitions: np, replicationFactor: rf, brokers: b });
        const gone = b[goneSeed % nb]!;
        const r = planReplacements({ topics: [{ name: 't', partitions: p }], live: b, gone: [gone] });
        const survivors = b.filter((x) => x !== gone);
        for (const x of r.topics[0]!.partitions) {
          expect(new Set(x.replicas).size).toBe(x.replicas.length);
          expect(x.replicas).toHaveLength(rf);
          if (survivors.length >= rf) expect(x.replicas).not.toContain(gone);
        }
        if (survivors.length >= rf) {
          expect(r.underReplicated).toEqual([]);
          // A gone broker's partitions may all include the least-loaded survivors, so one more than a fresh placement.
          expect(spread(counts(survivors, [r.topics[0]!.partitions]).replicas)).toBeLessThanOrEqual(2);
          expect(spread(counts(survivors, [r.topics[0]!.partitions]).leaders)).toBe(bestLeaderSpread(survivors, r.topics[0]!.partitions));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('consumer assignment', () => {
  it('dequeueOrder is (i + j) mod n, then the rest in order', () => {
    expect(dequeueOrder(0, 0, 3)).toEqual([0, 1, 2]);
    expect(dequeueOrder(1, 0, 3)).toEqual([1, 2, 0]);
    expect(dequeueOrder(1, 1, 3)).toEqual([2, 0, 1]);
    expect(dequeueOrder(5, 7, 4)).toEqual([0, 1, 2, 3]);
  });

  it('property: dequeueOrder is a permutation starting at (i + j) mod n', () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.nat(1000), fc.integer({ min: 1, max: 20 }), (i, j, n) => {
        const o = dequeueOrder(i, j, n);
        expect([...o].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, k) => k));
        expect(o[0]).toBe((i + j) % n);
      }),
    );
  });

  it('property: a group splits the partitions exactly once, at most one apart', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 30 }), (members, n) => {
        const a = assignGroupPartitions(members, n);
        const all = [...a.values()].flat().sort((x, y) => x - y);
        expect(all).toEqual(Array.from({ length: n }, (_, k) => k));
        expect(spread([...a.values()].map((v) => v.length))).toBeLessThanOrEqual(1);
        expect(assignGroupPartitions([...members].reverse(), n)).toEqual(a);
      }),
    );
  });

  it('defaultPartitionCount follows the broker count', () => {
    expect(defaultPartitionCount(0)).toBe(1);
    expect(defaultPartitionCount(4)).toBe(4);
  });
});
