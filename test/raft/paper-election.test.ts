// Paper tests for leader election (§5.1, §5.2, §5.4.1 of "In Search of an
// Understandable Consensus Algorithm"), pre-vote and check-quorum (thesis §9.6, §6.2).
import { describe, expect, it } from 'vitest';
import { Raft } from '../../src/raft/core/raft.js';
import { MemoryLog, emptySnapshot } from '../../src/raft/storage/memory-log.js';
import { MemNetwork } from './harness/mem-network.js';

function lone(id: string, voters: string[], opts: { preVote?: boolean; checkQuorum?: boolean } = {}): Raft {
  return new Raft({
    id,
    electionTick: 10,
    heartbeatTick: 1,
    storage: new MemoryLog(emptySnapshot({ voters, learners: [] })),
    random: () => 0,
    preVote: opts.preVote ?? false,
    checkQuorum: opts.checkQuorum ?? false,
  });
}

describe('§5.2 leader election', () => {
  it('a follower that hears nothing for an election timeout becomes a candidate, increments its term, votes for itself and asks every peer', () => {
    const r = lone('a', ['a', 'b', 'c']);
    expect(r.role).toBe('follower');
    for (let i = 0; i < 10; i++) r.tick(); // random() = 0 -> timeout = electionTick
    expect(r.role).toBe('candidate');
    expect(r.term).toBe(1);
    expect(r.vote).toBe('a');
    const rd = r.ready();
    const votes = rd.messages.filter((m) => m.type === 'vote');
    expect(votes.map((m) => m.to).sort()).toEqual(['b', 'c']);
    expect(votes.every((m) => m.term === 1)).toBe(true);
    // the vote for itself must be persisted with the request (mustSync)
    expect(rd.hardState).toEqual({ term: 1, vote: 'a', commit: 0 });
    expect(rd.mustSync).toBe(true);
  });

  it('the election timeout is randomized in [electionTick, 2*electionTick)', () => {
    for (const [rnd, expected] of [
      [0, 10],
      [0.5, 15],
      [0.99, 19],
    ] as const) {
      const r = new Raft({
        id: 'a',
        electionTick: 10,
        heartbeatTick: 1,
        storage: new MemoryLog(emptySnapshot({ voters: ['a', 'b', 'c'], learners: [] })),
        random: () => rnd,
        preVote: false,
      });
      let ticks = 0;
      while (r.role === 'follower' && ticks < 100) {
        r.tick();
        ticks++;
      }
      expect(ticks).toBe(expected);
    }
  });

  it('a candidate that wins a majority becomes leader and asserts itself with an entry of its term', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').role).toBe('leader');
    expect(net.raft('b').lead).toBe('a');
    expect(net.raft('c').lead).toBe('a');
    // §8: the no-op of the new term is committed everywhere
    for (const id of ['a', 'b', 'c']) expect(net.raft(id).log.committed).toBe(1);
  });

  it('each server votes for at most one candidate in a term (first come, first served)', () => {
    const r = lone('c', ['a', 'b', 'c']);
    r.step({ type: 'vote', from: 'a', to: 'c', term: 1, index: 0, logTerm: 0 });
    r.step({ type: 'vote', from: 'b', to: 'c', term: 1, index: 0, logTerm: 0 });
    const resp = r.ready().messages;
    expect(resp.map((m) => [m.type, m.to, m.reject === true])).toEqual([
      ['voteResp', 'a', false],
      ['voteResp', 'b', true],
    ]);
    expect(r.vote).toBe('a');
  });

  it('a vote survives a restart: the grant is in the hard state handed out with the reply', () => {
    const st = new MemoryLog(emptySnapshot({ voters: ['a', 'b', 'c'], learners: [] }));
    const mk = () => new Raft({ id: 'c', electionTick: 10, heartbeatTick: 1, storage: st, random: () => 0, preVote: false });
    const r = mk();
    r.step({ type: 'vote', from: 'a', to: 'c', term: 1, index: 0, logTerm: 0 });
    const rd = r.ready();
    expect(rd.mustSync).toBe(true);
    st.setHardState(rd.hardState!); // what the host persists before sending
    r.advance(rd);
    const again = mk(); // crash + restart
    again.step({ type: 'vote', from: 'b', to: 'c', term: 1, index: 0, logTerm: 0 });
    expect(again.ready().messages[0]).toMatchObject({ type: 'voteResp', to: 'b', reject: true });
  });

  it('a candidate that hears from a leader of its term returns to follower', () => {
    const r = lone('a', ['a', 'b', 'c']);
    for (let i = 0; i < 10; i++) r.tick();
    expect(r.role).toBe('candidate');
    r.step({ type: 'app', from: 'b', to: 'a', term: 1, index: 0, logTerm: 0, entries: [], commit: 0 });
    expect(r.role).toBe('follower');
    expect(r.lead).toBe('b');
  });

  it('a split vote ends in a new election with a higher term', () => {
    const net = new MemNetwork(['a', 'b', 'c', 'd']);
    // a and b campaign at once; c votes a, d votes b -> nobody has 3 of 4
    net.cut('a', 'd');
    net.cut('b', 'c');
    net.raft('a').campaign();
    net.raft('b').campaign();
    net.stabilize();
    expect(net.leader()).toBeNull();
    net.recover();
    net.tickAll(40);
    const l = net.leader();
    expect(l).not.toBeNull();
    expect(net.raft(l!).term).toBeGreaterThan(1);
  });
});

describe('§5.1 terms', () => {
  it('a server that sees a higher term becomes a follower in it', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.raft('a').step({ type: 'heartbeat', from: 'b', to: 'a', term: 5, commit: 0 });
    expect(net.raft('a').role).toBe('follower');
    expect(net.raft('a').term).toBe(5);
  });

  it('a request with a stale term is rejected: a stale leader is told the newer term', () => {
    const r = lone('a', ['a', 'b', 'c']);
    r.step({ type: 'heartbeat', from: 'b', to: 'a', term: 3, commit: 0 });
    r.advance(r.ready());
    r.step({ type: 'app', from: 'c', to: 'a', term: 2, index: 0, logTerm: 0, entries: [], commit: 0 });
    // with pre-vote/check-quorum off, a stale app is simply ignored
    expect(r.ready().messages).toEqual([]);
    const pv = lone('a', ['a', 'b', 'c'], { preVote: true });
    pv.step({ type: 'heartbeat', from: 'b', to: 'a', term: 3, commit: 0 });
    pv.advance(pv.ready());
    pv.step({ type: 'app', from: 'c', to: 'a', term: 2, index: 0, logTerm: 0, entries: [], commit: 0 });
    expect(pv.ready().messages).toEqual([expect.objectContaining({ type: 'appResp', to: 'c', term: 3 })]);
  });
});

describe('§5.4.1 election restriction', () => {
  it('a candidate whose log is less up-to-date cannot win', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.cut('a', 'c');
    net.propose('a', 'x'); // committed on a and b, not on c
    expect(net.raft('a').log.committed).toBe(2);
    net.recover();
    net.isolate('a'); // the leader disappears
    net.raft('c').campaign();
    net.stabilize();
    // b refuses c (b's log has term-1 entry 2; c's ends at 1)
    expect(net.raft('c').role).not.toBe('leader');
    net.raft('b').campaign();
    net.stabilize();
    expect(net.raft('b').role).toBe('leader');
    expect(net.appliedData('c')).toEqual(['x']);
  });

  it('up-to-date compares last terms first, then lengths', () => {
    const net = new MemNetwork(['a']);
    const log = net.raft('a').log;
    // empty log: (0,0)
    expect(log.isUpToDate(0, 0)).toBe(true);
    net.elect('a'); // entry 1 at term 1
    expect(log.isUpToDate(5, 0)).toBe(false); // older last term loses however long
    expect(log.isUpToDate(0, 2)).toBe(true); // newer last term wins however short
    expect(log.isUpToDate(1, 1)).toBe(true);
    expect(log.isUpToDate(0, 1)).toBe(false);
  });
});

describe('thesis §9.6 pre-vote and §6.2 check-quorum', () => {
  it('a node cut off and healed cannot depose a healthy leader, and its term does not run away', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: true, checkQuorum: true });
    net.elect('a');
    const term = net.raft('a').term;
    net.isolate('c');
    for (let i = 0; i < 100; i++) {
      net.tick('c');
      net.tickAll(0);
      net.stabilize();
    }
    expect(net.raft('c').term).toBe(term); // pre-votes never succeed, so the term stays
    net.recover();
    net.tickAll(30);
    expect(net.raft('a').role).toBe('leader');
    expect(net.raft('a').term).toBe(term);
  });

  it('without pre-vote and check-quorum the same rejoin disrupts the leader (the problem they solve)', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('a');
    const term = net.raft('a').term;
    net.isolate('c');
    for (let i = 0; i < 100; i++) net.tick('c');
    net.stabilize();
    expect(net.raft('c').term).toBeGreaterThan(term + 3);
    net.recover();
    net.tickAll(25); // c's next election timeout fires with its inflated term
    expect(net.raft('a').term).toBeGreaterThan(term);
  });

  it('a leader that loses its quorum steps down after an election timeout', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: true, checkQuorum: true });
    net.elect('a');
    net.cut('a', 'b');
    net.cut('a', 'c');
    for (let i = 0; i < 25; i++) {
      net.tick('a');
      net.stabilize();
    }
    expect(net.raft('a').role).toBe('follower');
  });

  it('with check-quorum a follower that has a live leader ignores vote requests of higher terms', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: false, checkQuorum: true });
    net.elect('a');
    const term = net.raft('b').term;
    net.raft('b').step({ type: 'vote', from: 'c', to: 'b', term: term + 1, index: 99, logTerm: 99 });
    expect(net.raft('b').term).toBe(term);
    expect(net.raft('b').lead).toBe('a');
  });
});
