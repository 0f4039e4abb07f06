// The pure failover rules of the shard records: who is promoted, when a
// primary is reinstated, how a deposed primary rejoins.
import { describe, expect, it } from 'vitest';
import { decideFailover, promote, reinstate, rejoin, type CopyReport, type ShardRecord } from '../../src/core/shard-records.js';

const now = '2030-01-01T00:00:00.000Z';

function record(over: Partial<ShardRecord> = {}): ShardRecord {
  return {
    shard: 1,
    epoch: 3,
    primary: 'shard-1-pg-1',
    replicas: ['shard-1-pg-2', 'shard-1-pg-3'],
    fenced: [],
    partition: 0,
    topic: 'votes',
    mode: 'log',
    service: 'shard-1-svc',
    members: {},
    history: [],
    updatedAt: now,
    ...over,
  };
}

const replica = (appliedOffset: number, over: Partial<CopyReport> = {}): CopyReport => ({ alive: true, state: 'replica', copy: 'ready', epoch: 3, appliedOffset, ...over });

describe('decideFailover', () => {
  it('does nothing while the primary is alive (or unknown)', () => {
    expect(decideFailover(record(), new Map([['shard-1-pg-1', { alive: true, state: 'primary', copy: 'ready', epoch: 3 }]]))).toEqual({ action: 'none' });
    expect(decideFailover(record(), new Map())).toEqual({ action: 'none' });
  });

  it('promotes the live, ready replica that applied the most of the log', () => {
    const d = decideFailover(
      record(),
      new Map([
        ['shard-1-pg-1', { alive: false }],
        ['shard-1-pg-2', replica(90)],
        ['shard-1-pg-3', replica(120)],
      ]),
    );
    expect(d).toMatchObject({ action: 'promote', to: 'shard-1-pg-3' });
    expect((d as { reason: string }).reason).toMatch(/shard-1-pg-1 is dead; shard-1-pg-3 had applied the vote log up to offset 120/);
  });

  it('never promotes a dead, seeding, empty or lagging-epoch replica', () => {
    const base: [string, CopyReport][] = [['shard-1-pg-1', { alive: false }]];
    for (const bad of [replica(999, { alive: false }), replica(999, { state: 'seeding' }), replica(999, { copy: 'empty' }), replica(999, { epoch: 2 })]) {
      const d = decideFailover(record(), new Map([...base, ['shard-1-pg-2', bad], ['shard-1-pg-3', replica(5)]]));
      expect(d).toMatchObject({ action: 'promote', to: 'shard-1-pg-3' });
    }
    expect(decideFailover(record(), new Map([...base, ['shard-1-pg-2', replica(9, { alive: false })]]))).toMatchObject({ action: 'none' });
  });

  it('a primary that reports its data lost at this epoch is replaced; with no replica it is reinstated', () => {
    const lost: CopyReport = { alive: true, state: 'lost-data', copy: 'empty', epoch: 0, dataLostAtEpoch: 3 };
    expect(decideFailover(record(), new Map([['shard-1-pg-1', lost], ['shard-1-pg-2', replica(7)]]))).toMatchObject({ action: 'promote', to: 'shard-1-pg-2' });
    expect(decideFailover(record({ replicas: [] }), new Map([['shard-1-pg-1', lost]]))).toMatchObject({ action: 'reinstate' });
    // a report about an older epoch is stale
    expect(decideFailover(record(), new Map([['shard-1-pg-1', { ...lost, dataLostAtEpoch: 2 }]]))).toEqual({ action: 'none' });
  });

  it('without a vote log the replica holding the most votes wins', () => {
    const d = decideFailover(
      record(),
      new Map<string, CopyReport>([
        ['shard-1-pg-1', { alive: false }],
        ['shard-1-pg-2', { alive: true, state: 'replica', copy: 'ready', epoch: 3, votes: 10 }],
        ['shard-1-pg-3', { alive: true, state: 'replica', copy: 'ready', epoch: 3, votes: 12 }],
      ]),
    );
    expect(d).toMatchObject({ action: 'promote', to: 'shard-1-pg-3' });
  });
});

describe('promote, reinstate, rejoin', () => {
  it('promote fences the old primary, raises the epoch and records what was at risk', () => {
    const r = promote(record(), 'shard-1-pg-2', 3, 'failover', now, { atRisk: 4 });
    expect(r).toMatchObject({ ok: true, record: { epoch: 4, primary: 'shard-1-pg-2', replicas: ['shard-1-pg-3'], fenced: ['shard-1-pg-1'] } });
    if (r.ok) expect(r.record.history.at(-1)).toEqual({ epoch: 4, primary: 'shard-1-pg-2', at: now, reason: 'failover', atRisk: 4 });
    expect(promote(record(), 'shard-1-pg-2', 2, 'x', now)).toMatchObject({ ok: false, status: 409 });
  });

  it('reinstate keeps the primary under a new epoch (compare-and-set on the epoch)', () => {
    expect(reinstate(record(), 3, 'lost data', now)).toMatchObject({ ok: true, record: { epoch: 4, primary: 'shard-1-pg-1' } });
    expect(reinstate(record(), 4, 'x', now)).toMatchObject({ ok: false, status: 409 });
  });

  it('rejoin moves a fenced copy back among the replicas at the epoch it was fenced under, and sums lost votes', () => {
    const fenced = record({ epoch: 4, primary: 'shard-1-pg-2', replicas: ['shard-1-pg-3'], fenced: ['shard-1-pg-1'], lostVotes: 2 });
    const r = rejoin(fenced, 'shard-1-pg-1', 4, 5, now);
    expect(r).toMatchObject({ ok: true, record: { replicas: ['shard-1-pg-1', 'shard-1-pg-3'], fenced: [], lostVotes: 7 } });
    if (r.ok) expect(r.record.history.at(-1)).toMatchObject({ lost: 5, reason: expect.stringMatching(/rejoined as a replica.*5 vote/) });
    expect(rejoin(fenced, 'shard-1-pg-1', 3, 0, now)).toMatchObject({ ok: false, status: 409 });
    expect(rejoin(fenced, 'shard-1-pg-3', 4, 0, now)).toMatchObject({ ok: true });
    expect(rejoin(fenced, 'shard-1-pg-9', 4, 0, now)).toMatchObject({ ok: false, status: 409 });
    const noCount = rejoin(fenced, 'shard-1-pg-1', 4, null, now);
    expect(noCount.ok && noCount.record.lostVotes).toBe(2);
  });
});
