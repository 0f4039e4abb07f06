// The simulator's own guarantees: a seed replays exactly, and the checks
// catch a deliberately broken Raft (reads served locally, without ReadIndex).
import { describe, expect, it } from 'vitest';
import { checkSeed } from './sim/check-seed.js';
import { simOptionsForSeed } from './sim/scenarios.js';
import { runSimulation } from './sim/sim-cluster.js';

describe('simulator', () => {
  it('replays a seed exactly: same events, same history', () => {
    const a = runSimulation(simOptionsForSeed(4242));
    const b = runSimulation(simOptionsForSeed(4242));
    expect(b.stats).toEqual(a.stats);
    expect(JSON.stringify(b.history)).toEqual(JSON.stringify(a.history));
  });

  it('the linearizability checker catches follower reads served without ReadIndex', () => {
    let caught = 0;
    const seeds = 20;
    for (let s = 1; s <= seeds; s++) {
      const out = checkSeed({ ...simOptionsForSeed(s), unsafeLocalReads: true });
      if (!out.ok && out.problem!.startsWith('history not linearizable')) caught++;
    }
    // stale reads need a lagging node to be read from; most seeds have one
    expect(caught).toBeGreaterThanOrEqual(seeds / 2);
  });

  it('the same seeds pass with ReadIndex (the broken variant is what fails)', () => {
    for (let s = 1; s <= 20; s++) {
      const out = checkSeed(simOptionsForSeed(s));
      expect(out.problem ?? 'ok').toBe('ok');
    }
  });
});
