import { describe, expect, it } from 'vitest';
import { settleStatus, type StatusDoc, type StatusNode } from '../../src/cli/cluster-status.js';

// `up` and `scale` judge the cluster after a short settle: an election in
// progress right after new nodes started is not a failure, a dead node is.
function node(name: string, runtimeState: StatusNode['runtimeState'] = 'running', disconnected = false): StatusNode {
  return {
    name,
    role: 'broker',
    state: runtimeState === 'running' ? 'running' : runtimeState,
    runtimeState,
    disconnected,
    healthy: runtimeState === 'running' && !disconnected,
    leader: null,
    term: null,
    commitIndex: null,
    appliedIndex: null,
    endpoint: `http://127.0.0.1/${name}`,
  };
}

function doc(problems: string[], nodes: StatusNode[] = [node('broker-1')]): StatusDoc {
  return {
    schema: 'dvote.status/v1',
    cluster: 't',
    runtime: 'process',
    healthy: problems.length === 0,
    managerLeader: null,
    problems,
    nodes,
    partitions: [],
    shards: [],
    checkedAt: new Date(0).toISOString(),
  };
}

function sequence(docs: StatusDoc[]): { collect: () => Promise<StatusDoc>; calls: () => number } {
  let i = 0;
  return { collect: async () => docs[Math.min(i++, docs.length - 1)]!, calls: () => i };
}

describe('settleStatus', () => {
  it('waits through a leaderless partition until the cluster reports healthy, showing the problem meanwhile', async () => {
    const s = sequence([doc(['partition bad/0 has no leader']), doc(['partition bad/0 has no leader']), doc([])]);
    const seen: string[] = [];
    const r = await settleStatus(s.collect, { settleMs: 5_000, intervalMs: 1, onPending: (x) => seen.push(x) });
    expect(r.healthy).toBe(true);
    expect(s.calls()).toBe(3);
    expect(seen).toEqual(['partition bad/0 has no leader', 'partition bad/0 has no leader']);
  });

  it('gives up after settleMs and returns the last unhealthy status', async () => {
    const s = sequence([doc(['the managers have no leader'])]);
    const t0 = performance.now();
    const r = await settleStatus(s.collect, { settleMs: 60, intervalMs: 5 });
    expect(r.healthy).toBe(false);
    expect(r.problems).toEqual(['the managers have no leader']);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
    expect(s.calls()).toBeGreaterThan(2);
  });

  it('does not wait when a node is not running or is cut off: waiting will not heal it', async () => {
    for (const n of [node('broker-2', 'killed'), node('broker-2', 'running', true)]) {
      const s = sequence([doc(['broker-2: node is killed'], [node('broker-1'), n]), doc([])]);
      const r = await settleStatus(s.collect, { settleMs: 10_000, intervalMs: 1 });
      expect(r.healthy).toBe(false);
      expect(s.calls()).toBe(1);
    }
  });

  it('starts from a status already collected instead of asking again', async () => {
    const s = sequence([doc(['never seen'])]);
    const r = await settleStatus(s.collect, { settleMs: 50, intervalMs: 1, first: doc([]) });
    expect(r.healthy).toBe(true);
    expect(s.calls()).toBe(0);
    // An unhealthy first status is followed by fresh checks.
    const t = sequence([doc([])]);
    expect((await settleStatus(t.collect, { settleMs: 10_000, intervalMs: 1, first: doc(['partition bad/0 has no leader']) })).healthy).toBe(true);
    expect(t.calls()).toBe(1);
  });

  it('returns at once when healthy', async () => {
    const s = sequence([doc([]), doc(['never seen'])]);
    expect((await settleStatus(s.collect, { settleMs: 10_000 })).healthy).toBe(true);
    expect(s.calls()).toBe(1);
  });
});
