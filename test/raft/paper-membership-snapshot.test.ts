// Single-server membership changes (thesis §4.1, §4.2.1 learners that catch
// up first) and snapshots / InstallSnapshot (§7).
import { describe, expect, it } from 'vitest';
import { MemNetwork } from './harness/mem-network.js';

describe('thesis §4.1 single-server membership changes', () => {
  it('adds a learner, lets it catch up, promotes it to voter; the new node then counts toward the quorum', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    net.addNode('d', { voters: [], learners: [] });
    net.raft('a').proposeConfChange({ type: 'addLearner', node: 'd' });
    net.stabilize();
    net.tickAll(2);
    expect(net.raft('a').confState().learners).toEqual(['d']);
    expect(net.appliedData('d')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    // a learner never campaigns
    for (let i = 0; i < 50; i++) net.tick('d');
    expect(net.raft('d').role).toBe('follower');
    net.raft('a').proposeConfChange({ type: 'addVoter', node: 'd' });
    net.stabilize();
    expect(net.raft('a').confState().voters.sort()).toEqual(['a', 'b', 'c', 'd']);
    // with 4 voters a quorum is 3: a and d alone cannot commit
    net.cut('a', 'b');
    net.cut('a', 'c');
    net.propose('a', 'needs3');
    expect(net.appliedData('a')).not.toContain('needs3');
    net.recover();
    net.tickAll(2);
    expect(net.appliedData('a')).toContain('needs3');
  });

  it('allows only one membership change at a time', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a'); // keep the first change uncommitted
    net.raft('a').proposeConfChange({ type: 'addLearner', node: 'd' });
    expect(() => net.raft('a').proposeConfChange({ type: 'addLearner', node: 'e' })).toThrow(/still being applied/);
  });

  it('removes a voter; the quorum shrinks so two of the remaining two must agree', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.raft('a').proposeConfChange({ type: 'removeNode', node: 'c' });
    net.stabilize();
    expect(net.raft('a').confState().voters.sort()).toEqual(['a', 'b']);
    net.isolate('c');
    net.propose('a', 'after-remove');
    expect(net.appliedData('b')).toContain('after-remove');
  });

  it('a removed leader steps down and the rest elect a new one', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.raft('a').proposeConfChange({ type: 'removeNode', node: 'a' });
    net.stabilize();
    expect(net.raft('a').role).toBe('follower');
    net.isolate('a');
    net.tickAll(30);
    const l = net.leader();
    expect(l === 'b' || l === 'c').toBe(true);
  });

  it('refuses to remove the last voter and to add an existing voter', () => {
    const net = new MemNetwork(['a']);
    net.elect('a');
    expect(() => net.raft('a').proposeConfChange({ type: 'removeNode', node: 'a' })).toThrow(/last voter/);
    expect(() => net.raft('a').proposeConfChange({ type: 'addVoter', node: 'a' })).toThrow(/already a voter/);
  });
});

describe('§7 log compaction and InstallSnapshot', () => {
  it('a follower behind the compacted log is caught up with a snapshot and then with entries', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 30; i++) net.propose('a', `v${i}`);
    net.snapshotAndCompact('a');
    net.snapshotAndCompact('b');
    net.propose('a', 'after-snapshot');
    net.recover();
    net.tickAll(3);
    expect(net.sent.some((m) => m.type === 'snap' && m.to === 'c')).toBe(true);
    expect(net.appliedData('c')).toEqual([...Array.from({ length: 30 }, (_, i) => `v${i}`), 'after-snapshot']);
    expect(net.raft('c').log.committed).toBe(net.raft('a').log.committed);
  });

  it('a restarted node recovers from its own snapshot plus the log after it', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.snapshotAndCompact('b', 2);
    net.propose('a', 'tail');
    net.restart('b');
    net.tickAll(3);
    expect(net.appliedData('b')).toEqual([...Array.from({ length: 10 }, (_, i) => `v${i}`), 'tail']);
  });

  it('a snapshot the follower already covers is not installed (it only moves commit)', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    const snap = net.node('a').storage.createSnapshot(3, net.raft('a').confState(), new Uint8Array(0));
    const term = net.raft('b').term;
    net.raft('b').step({ type: 'snap', from: 'a', to: 'b', term, snapshot: snap });
    expect(net.raft('b').log.unstableSnapshot).toBeNull();
  });
});
