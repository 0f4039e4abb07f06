import { describe, expect, it } from 'vitest';
import { FailureDetector } from '../../src/core/failure-detector.js';

const beat = (id: string) => ({ id, role: 'broker', http: `${id}:8080`, info: {} });

describe('failure detector', () => {
  it('registers a new node as alive, declares it dead after the timeout, alive again when heard', () => {
    const fd = new FailureDetector(1000);
    expect(fd.heartbeat(0, beat('b1')).isNew).toBe(true);
    expect(fd.evaluate(10)).toEqual([{ id: 'b1', to: 'alive', silentMs: 10 }]);
    fd.committedTransition('b1', 'alive');
    expect(fd.evaluate(900)).toEqual([]);
    expect(fd.evaluate(1001)).toEqual([{ id: 'b1', to: 'dead', silentMs: 1001 }]);
    fd.committedTransition('b1', 'dead');
    expect(fd.evaluate(1500)).toEqual([]);
    fd.heartbeat(1600, beat('b1'));
    expect(fd.evaluate(1601)).toEqual([{ id: 'b1', to: 'alive', silentMs: 1 }]);
  });

  it('a new leader gives every known node a grace period instead of declaring all dead', () => {
    const fd = new FailureDetector(1000);
    fd.reset(50_000, [
      { id: 'b1', role: 'broker', http: 'x', state: 'alive' },
      { id: 'b2', role: 'broker', http: 'y', state: 'dead' },
    ]);
    expect(fd.evaluate(50_500)).toEqual([]); // b1 within its grace period, b2 stays dead
    expect(fd.evaluate(51_001)).toEqual([{ id: 'b1', to: 'dead', silentMs: 1001 }]);
    fd.heartbeat(51_100, beat('b2'));
    expect(fd.evaluate(51_100)).toEqual([
      { id: 'b1', to: 'dead', silentMs: 1100 },
      { id: 'b2', to: 'alive', silentMs: 0 },
    ]);
  });
});
