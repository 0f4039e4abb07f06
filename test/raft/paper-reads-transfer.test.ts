// ReadIndex (§6.4 of the Raft thesis / §8 of the paper) and leadership
// transfer (thesis §3.10).
import { describe, expect, it } from 'vitest';
import { MemNetwork } from './harness/mem-network.js';

describe('§6.4 ReadIndex', () => {
  it('the leader answers a read only after a quorum confirms it is still leader, at its commit index', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.isolate('a'); // no heartbeat acks can come back
    net.raft('a').readIndex('r1');
    net.stabilize();
    expect(net.node('a').readStates).toEqual([]);
    net.recover();
    net.tickAll(1); // the heartbeat carries the read context; the acks release it
    expect(net.node('a').readStates).toEqual([{ index: 2, context: 'r1' }]);
  });

  it('a deposed leader cannot serve a read: a stale leader cut off from its quorum never confirms', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    net.elect('b'); // b leads a newer term; a still believes it leads
    net.propose('b', 'new');
    expect(net.raft('a').role).toBe('leader');
    net.raft('a').readIndex('stale');
    for (let i = 0; i < 5; i++) {
      net.tick('a');
      net.stabilize();
    }
    expect(net.node('a').readStates).toEqual([]);
  });

  it('a follower forwards a read to the leader and gets the leader commit index back', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.raft('c').readIndex('from-c');
    net.stabilize();
    expect(net.node('c').readStates).toEqual([{ index: 2, context: 'from-c' }]);
    expect(net.sent.some((m) => m.type === 'readIndex' && m.from === 'c' && m.to === 'a')).toBe(true);
  });

  it('a new leader defers reads until it has committed an entry of its own term', () => {
    const net = new MemNetwork(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.isolate('a');
    // b wins but its no-op cannot commit yet (its appends are lost)
    net.dropIf = (m) => m.type === 'app' && m.from === 'b';
    net.elect('b');
    net.raft('b').readIndex('early');
    net.stabilize();
    expect(net.node('b').readStates).toEqual([]);
    net.dropIf = null;
    net.tickAll(2);
    const b = net.raft('b');
    expect(b.log.term(b.log.committed)).toBe(b.term);
    expect(net.node('b').readStates).toEqual([{ index: 3, context: 'early' }]);
  });
});

describe('thesis §3.10 leadership transfer', () => {
  it('transfers to a caught-up follower, which wins the next term at once', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: true, checkQuorum: true });
    net.elect('a');
    net.propose('a', 'x');
    const term = net.raft('a').term;
    net.raft('a').transferLeadership('c');
    net.stabilize();
    expect(net.raft('c').role).toBe('leader');
    expect(net.raft('c').term).toBe(term + 1);
    expect(net.raft('a').role).toBe('follower');
  });

  it('catches a lagging target up before handing over', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: true, checkQuorum: true });
    net.elect('a');
    net.cut('a', 'c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.recover();
    net.raft('a').transferLeadership('c');
    net.stabilize();
    expect(net.raft('c').role).toBe('leader');
    expect(net.appliedData('c').length).toBeGreaterThanOrEqual(0);
    net.propose('c', 'after');
    expect(net.appliedData('b')).toEqual([...Array.from({ length: 10 }, (_, i) => `v${i}`), 'after']);
  });

  it('refuses proposals during a transfer, and gives up after an election timeout if the target is gone', () => {
    const net = new MemNetwork(['a', 'b', 'c'], { preVote: true, checkQuorum: true });
    net.elect('a');
    net.isolate('c');
    net.raft('a').transferLeadership('c');
    expect(() => net.raft('a').propose(new Uint8Array([1]))).toThrow(/transferred/);
    net.recover();
    net.cut('a', 'c');
    for (let i = 0; i < 12; i++) {
      net.tick('a');
      net.tick('b');
      net.stabilize();
    }
    expect(net.raft('a').role).toBe('leader');
    expect(() => net.raft('a').propose(new Uint8Array([1]))).not.toThrow();
  });
});
