import { describe, expect, it } from 'vitest';
import { Workload } from '../../src/bench/workload.js';

describe('bench workload', () => {
  it('uses every voter id once before repeating, spread over the space, with about the asked share of repeats', () => {
    const w = new Workload({ minId: 1000, voters: 10_000, duplicates: 0.01, choices: 3, seed: 7 });
    const seen = new Set<number>();
    let repeats = 0;
    for (let i = 0; i < 9_000; i++) {
      const v = w.take();
      expect(v.voterId).toBeGreaterThanOrEqual(1000);
      expect(v.voterId).toBeLessThan(11_000);
      expect(v.choice).toBeGreaterThanOrEqual(1);
      expect(v.choice).toBeLessThanOrEqual(3);
      if (v.repeat) {
        repeats++;
        expect(seen.has(v.voterId)).toBe(true);
      } else {
        expect(seen.has(v.voterId)).toBe(false);
        seen.add(v.voterId);
      }
    }
    expect(repeats).toBeGreaterThan(40);
    expect(repeats).toBeLessThan(150);
    // consecutive fresh ids are far apart (different shards under any map)
    const a = new Workload({ minId: 0, voters: 1000, duplicates: 0, choices: 2, seed: 1 });
    const x = a.take().voterId;
    const y = a.take().voterId;
    expect(Math.abs(x - y)).toBeGreaterThan(100);
  });

  it('is reproducible from its seed', () => {
    const a = new Workload({ minId: 1, voters: 500, duplicates: 0.2, choices: 3, seed: 42 });
    const b = new Workload({ minId: 1, voters: 500, duplicates: 0.2, choices: 3, seed: 42 });
    for (let i = 0; i < 300; i++) expect(a.take()).toEqual(b.take());
  });
});
