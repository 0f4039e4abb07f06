import { describe, expect, it } from 'vitest';
import { partitionRows, type StatusNode } from '../../src/cli/cluster-status.js';

function broker(name: string, partitions: Record<string, unknown>[]): StatusNode {
  return {
    name,
    role: 'broker',
    state: 'running',
    runtimeState: 'running',
    disconnected: false,
    healthy: true,
    leader: null,
    term: null,
    commitIndex: null,
    appliedIndex: null,
    endpoint: `http://127.0.0.1/${name}`,
    health: { partitions },
  };
}

const report = (topic: string, partition: number, role: string, term: number, extra: Record<string, unknown> = {}) => ({
  topic,
  partition,
  role,
  term,
  commitIndex: 10 * term,
  highWatermark: 100 * term,
  voters: ['broker-1', 'broker-2', 'broker-3'],
  learners: [],
  lag: role === 'leader' ? 2 : 0,
  ...extra,
});

describe('partitionRows (status partition rows from broker /health reports)', () => {
  it('takes leader, replicas, commit index, messages and lag from the replica that leads in the highest term', () => {
    const rows = partitionRows([
      broker('broker-1', [report('t', 0, 'follower', 3), report('t', 1, 'leader', 2)]),
      broker('broker-2', [report('t', 0, 'leader', 3, { learners: ['broker-4'] })]),
      // A deposed leader still believing it leads in an older term does not win.
      broker('broker-3', [report('t', 0, 'leader', 2), report('t', 1, 'follower', 2)]),
    ]);
    expect(rows).toEqual([
      { topic: 't', partition: 0, leader: 'broker-2', term: 3, replicas: ['broker-1', 'broker-2', 'broker-3'], learners: ['broker-4'], reportedBy: ['broker-1', 'broker-2', 'broker-3'], commitIndex: 30, highWatermark: 300, lag: 2 },
      { topic: 't', partition: 1, leader: 'broker-1', term: 2, replicas: ['broker-1', 'broker-2', 'broker-3'], learners: [], reportedBy: ['broker-1', 'broker-3'], commitIndex: 20, highWatermark: 200, lag: 2 },
    ]);
  });

  it('a stale leader of an older term is not the leader when another replica reports a newer term', () => {
    const rows = partitionRows([broker('broker-1', [report('t', 0, 'follower', 3)]), broker('broker-2', [report('t', 0, 'leader', 2)])]);
    expect(rows[0]).toMatchObject({ leader: null, term: 3, lag: null });
  });

  it('a partition nobody leads has leader null and the highest term seen', () => {
    const rows = partitionRows([broker('broker-1', [report('t', 0, 'follower', 4)]), broker('broker-2', [report('t', 0, 'candidate', 5)])]);
    expect(rows[0]).toMatchObject({ leader: null, term: 5, reportedBy: ['broker-1', 'broker-2'] });
  });

  it('ignores nodes that are not brokers or have no report', () => {
    const m = { ...broker('manager-1', [report('t', 0, 'leader', 1)]), role: 'manager' };
    const silent = { ...broker('broker-9', []), health: undefined } as StatusNode;
    expect(partitionRows([m, silent])).toEqual([]);
  });
});
