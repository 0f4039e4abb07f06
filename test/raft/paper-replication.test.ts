// Paper tests for log replication and commitment (§5.3, §5.4.2, Figure 8).
import { describe, expect, it } from 'vitest';
import { MemNetwork } from './harness/mem-network.js';

describe('§5.3 log replication', () => {
  it('the leader appends a proposal, replicates it, commits it once a majority stores it, and every node applies it in order', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 20; i++) net.propose('a', `v${i}`);
    for (const id of ['a', 'b', 'c']) {
      expect(net.appliedData(id)).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`));
    }
  });

  it('an entry stored on a minority is not committed; it commits when a majority stores it', () => {
    const net = new MemNetwork(['a', 'b', 'c', 'd', 'e']);
    net.elect('a');
    net.cut('a', 'c');
    net.cut('a', 'd');
    net.cut('a', 'e');
    net.propose('a', 'x');
    expect(net.raft('a').log.committed).toBe(1); // only a and b hold it
    net.recover();
    net.tickAll(2); // heartbeats reveal the lagging followers
    expect(net.raft('a').log.committed).toBe(2);
    expect(net.appliedData('e')).toEqual(['x']);
  });

  it('a proposal on a follower is refused with the leader named', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    expect(() => net.raft('b').propose(new Uint8Array([1]))).toThrow(/leader is a/);
  });

  it('the leader forces a follower with conflicting uncommitted entries to duplicate its log (Log Matching)', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    // a writes entries that only it holds
    net.isolate('a');
    for (let i = 0; i < 5; i++) net.raft('a').propose(new TextEncoder().encode(`lost${i}`));
    net.stabilize();
    // b becomes leader of a new term and commits other entries with c
    net.recover();
    net.isolate('a');
    net.elect('b');
    for (let i = 0; i < 3; i++) net.propose('b', `kept${i}`);
    net.recover();
    net.tickAll(3);
    expect(net.raft('a').role).toBe('follower');
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['kept0', 'kept1', 'kept2']);
    // Log Matching: identical logs everywhere
    const log = (id: string) =>
      net.raft(id).log.slice(1, net.raft(id).log.lastIndex() + 1).map((e) => `${e.index}:${e.term}`);
    expect(log('a')).toEqual(log('b'));
    expect(log('c')).toEqual(log('b'));
  });

  it('fast back-off: a follower far behind with a long conflicting suffix is repaired in a few round trips, not one per entry', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    for (let i = 0; i < 200; i++) net.raft('a').propose(new TextEncoder().encode(`stale${i}`));
    net.stabilize();
    net.recover();
    net.isolate('a');
    net.elect('b');
    for (let i = 0; i < 50; i++) net.propose('b', `new${i}`);
    net.recover();
    const before = net.sent.filter((m) => m.type === 'appResp' && m.reject && m.from === 'a').length;
    net.tickAll(3);
    const rejects = net.sent.filter((m) => m.type === 'appResp' && m.reject && m.from === 'a').length - before;
    expect(rejects).toBeLessThanOrEqual(3);
    expect(net.appliedData('a')).toHaveLength(50);
  });

  it('pipelining: a follower in replicate state receives several appends before acknowledging, bounded by the inflight window', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { maxInflight: 4, maxSizePerMsg: 1 });
    net.elect('a');
    const before = net.sent.length;
    net.cutOneWay('b', 'a'); // b receives but its acks are lost
    for (let i = 0; i < 20; i++) net.raft('a').propose(new TextEncoder().encode(`p${i}`));
    net.stabilize();
    const apps = net.sent
      .slice(before)
      .filter((m) => m.type === 'app' && m.to === 'b' && (m.entries?.length ?? 0) > 0);
    expect(apps.length).toBe(4); // the window, not all 20
    net.recover();
    net.tickAll(3);
    expect(net.appliedData('b')).toHaveLength(20);
  });
});

describe('§5.4.2 committing entries from previous terms (Figure 8)', () => {
  it('a leader never commits an entry of an earlier term by counting replicas; the scenario of Figure 8 (c)-(d)', () => {
    // Paper Figure 8 with five servers s1..s5. maxSizePerMsg=1 sends one entry per message.
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    const net = new MemNetwork(ids, { maxSizePerMsg: 1 });
    net.elect('s1'); // index 1, term 1, committed everywhere
    const t1 = net.raft('s1').term;

    // (a) s1 leads and replicates index 2 to s2 only.
    for (const o of ['s3', 's4', 's5']) net.cut('s1', o);
    net.propose('s1', 'figure8');
    expect(net.raft('s2').log.lastIndex()).toBe(2);
    expect(net.raft('s1').log.committed).toBe(1);

    // (b) s1 crashes; s5 wins with votes from s3, s4 (and itself) and writes its
    // own index 2 in a new term, which reaches no one.
    net.recover();
    net.isolate('s1');
    net.dropIf = (m) => m.from === 's5' && m.type === 'app';
    net.elect('s5');
    expect(net.raft('s5').role).toBe('leader');
    const t5 = net.raft('s5').term;
    expect(t5).toBeGreaterThan(t1);
    expect(net.raft('s5').log.term(2)).toBe(t5);

    // (c) s5 crashes; s1 comes back, wins a later term and replicates its old
    // index 2 (term t1) to s3 - now on a majority (s1, s2, s3) - but the entry of
    // its own term (index 3) does not get through yet.
    net.recover();
    net.isolate('s5');
    // Drop every append that would make index 3 stick on a follower (the
    // follower already holds index 2 from t1); probes that it must reject still pass.
    net.dropIf = (m) =>
      m.type === 'app' && (m.entries ?? []).some((e) => e.index >= 3) && net.raft(m.to).log.matchTerm(2, t1);
    net.restart('s1'); // it crashed: it comes back as a follower
    net.electUntil('s1'); // s3, s4 voted for s5 in its term, so s1 needs a later one
    expect(net.raft('s1').role).toBe('leader');
    expect(net.raft('s1').term).toBeGreaterThan(t5);
    expect(net.raft('s3').log.term(2)).toBe(t1);
    expect(net.raft('s4').log.term(2)).toBe(t1);
    // Index 2 is on s1..s4, a majority, but it is from an earlier term: NOT committed.
    expect(net.raft('s1').log.committed).toBe(1);
    for (const id of ['s1', 's2', 's3', 's4']) expect(net.appliedData(id)).toEqual([]);

    // (d) Why: if s1 crashes now, s5 (last term t5 > t1) can still win, with
    // votes from s2, s3, s4 (all hold index 2 from t1), and overwrite index 2 everywhere.
    net.recover();
    net.isolate('s1');
    net.restart('s5');
    net.electUntil('s5');
    net.tickAll(3);
    for (const id of ['s2', 's3', 's4']) expect(net.raft(id).log.term(2)).toBe(t5);
    expect(net.appliedData('s2')).not.toContain('figure8');
  });

  it('Figure 8 (e): once an entry of the current term is committed on a majority, the earlier entries commit with it', () => {
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    const net = new MemNetwork(ids, { maxSizePerMsg: 1 });
    net.elect('s1');
    for (const o of ['s3', 's4', 's5']) net.cut('s1', o);
    net.propose('s1', 'figure8');
    net.recover();
    net.isolate('s5');
    net.restart('s1');
    net.electUntil('s1'); // new term: its no-op at index 3 reaches s1..s4
    expect(net.raft('s1').log.committed).toBe(3);
    for (const id of ['s1', 's2', 's3', 's4']) expect(net.appliedData(id)).toEqual(['figure8']);
  });
});
