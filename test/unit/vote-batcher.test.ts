// The group-commit batcher with a scripted commit function: same-voter
// serialization, different voters never waiting for each other, batches that
// grow under load, the bound on waiting votes, pause/idle/resume.
import { describe, expect, it } from 'vitest';
import { QueueFullError, VoteBatcher, type PendingVote, type VoteOutcome } from '../../src/services/shard/vote-batcher.js';

interface Call {
  votes: PendingVote[];
  release: () => void;
  fail: (e: Error) => void;
}

/** A commit whose batches finish only when the test releases them; a toy store with first-vote-wins. */
function scripted() {
  const calls: Call[] = [];
  const stored = new Map<number, number>();
  const commit = (votes: PendingVote[]) =>
    new Promise<VoteOutcome[]>((resolve, reject) => {
      calls.push({
        votes,
        release: () =>
          resolve(
            votes.map((v) => {
              const first = stored.get(v.voterId);
              if (first === undefined) stored.set(v.voterId, v.choice);
              return { voterId: v.voterId, status: first === undefined ? 'accepted' : 'duplicate', choice: first ?? v.choice, castAt: '', epoch: 1 };
            }),
          ),
        fail: reject,
      });
    });
  return { calls, stored, commit };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('VoteBatcher', () => {
  it('commits an idle vote at once, alone', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit);
    const p = b.submit({ voterId: 1, choice: 1 });
    await tick();
    expect(s.calls).toHaveLength(1);
    s.calls[0]!.release();
    expect(await p).toMatchObject({ status: 'accepted', choice: 1 });
  });

  it('votes submitted together share one batch', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit, { maxInFlight: 4 });
    const ps = Array.from({ length: 50 }, (_, i) => b.submit({ voterId: i + 1, choice: 1 }));
    await tick();
    expect(s.calls).toHaveLength(1);
    expect(s.calls[0]!.votes).toHaveLength(50);
    s.calls[0]!.release();
    expect((await Promise.all(ps)).every((o) => o.status === 'accepted')).toBe(true);
  });

  it('batches grow while others are in flight, up to maxBatch, with at most maxInFlight running', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit, { maxInFlight: 2, maxBatch: 30 });
    const ps: Promise<VoteOutcome>[] = [];
    ps.push(b.submit({ voterId: 1, choice: 1 }));
    await tick();
    ps.push(b.submit({ voterId: 2, choice: 1 }));
    await tick();
    expect(s.calls).toHaveLength(2);
    for (let i = 3; i <= 100; i++) ps.push(b.submit({ voterId: i, choice: 1 }));
    await tick();
    expect(s.calls).toHaveLength(2); // both slots busy: the rest waits
    expect(b.stats()).toMatchObject({ inFlight: 2, queued: 98 });
    s.calls[0]!.release();
    await tick();
    await tick();
    expect(s.calls).toHaveLength(3);
    expect(s.calls[2]!.votes).toHaveLength(30);
    while (s.calls.some((c) => !('done' in c))) {
      const open = s.calls.filter((c) => !('done' in c));
      for (const c of open) {
        (c as Call & { done?: boolean }).done = true;
        c.release();
      }
      await tick();
      await tick();
    }
    await Promise.all(ps);
    expect(b.stats().largestBatch).toBe(30);
    expect(s.stored.size).toBe(100);
  });

  it('serializes the same voter: the second vote waits for the first and is a duplicate keeping the first choice', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit);
    const first = b.submit({ voterId: 7, choice: 1 });
    const second = b.submit({ voterId: 7, choice: 2 });
    const other = b.submit({ voterId: 8, choice: 3 });
    await tick();
    // voter 8 went in the same batch as voter 7's first vote; the second vote of 7 is not sent yet
    expect(s.calls).toHaveLength(1);
    expect(s.calls[0]!.votes.map((v) => v.voterId)).toEqual([7, 8]);
    s.calls[0]!.release();
    expect(await first).toMatchObject({ status: 'accepted', choice: 1 });
    expect(await other).toMatchObject({ status: 'accepted', choice: 3 });
    await tick();
    expect(s.calls).toHaveLength(2);
    expect(s.calls[1]!.votes).toEqual([{ voterId: 7, choice: 2 }]);
    s.calls[1]!.release();
    expect(await second).toMatchObject({ status: 'duplicate', choice: 1 });
  });

  it('a different voter does not wait behind a slow voter', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit, { maxInFlight: 4 });
    const slow = b.submit({ voterId: 1, choice: 1 });
    const slowAgain = b.submit({ voterId: 1, choice: 2 });
    await tick();
    const quick = b.submit({ voterId: 2, choice: 1 });
    await tick();
    expect(s.calls).toHaveLength(2);
    s.calls[1]!.release(); // voter 2's batch finishes while voter 1's first is still running
    expect(await quick).toMatchObject({ status: 'accepted' });
    s.calls[0]!.release();
    await slow;
    await tick();
    s.calls[2]!.release();
    expect(await slowAgain).toMatchObject({ status: 'duplicate', choice: 1 });
  });

  it('a failed batch fails its votes, and the voter\'s next vote still runs', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit);
    const a = b.submit({ voterId: 5, choice: 1 });
    const again = b.submit({ voterId: 5, choice: 2 });
    await tick();
    s.calls[0]!.fail(new Error('primary gone'));
    await expect(a).rejects.toThrow('primary gone');
    await tick();
    s.calls[1]!.release();
    expect(await again).toMatchObject({ status: 'accepted', choice: 2 });
  });

  it('refuses votes beyond maxQueued with QueueFullError, and takes them again once there is room', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit, { maxQueued: 10, maxInFlight: 1 });
    const ps = Array.from({ length: 10 }, (_, i) => b.submit({ voterId: i + 1, choice: 1 }));
    expect(b.room()).toBe(0);
    await expect(b.submit({ voterId: 99, choice: 1 })).rejects.toBeInstanceOf(QueueFullError);
    await tick();
    s.calls[0]!.release();
    await Promise.all(ps);
    expect(b.room()).toBe(10);
    const later = b.submit({ voterId: 99, choice: 1 });
    await tick();
    s.calls[1]!.release();
    expect(await later).toMatchObject({ status: 'accepted' });
  });

  it('pause holds new batches; idle resolves when the running ones finish; resume sends the held votes', async () => {
    const s = scripted();
    const b = new VoteBatcher(s.commit);
    const a = b.submit({ voterId: 1, choice: 1 });
    await tick();
    b.pause();
    const c = b.submit({ voterId: 2, choice: 1 });
    await tick();
    expect(s.calls).toHaveLength(1);
    let idle = false;
    const idleP = b.idle().then(() => (idle = true));
    await tick();
    expect(idle).toBe(false);
    s.calls[0]!.release();
    await idleP;
    await a;
    expect(s.calls).toHaveLength(1);
    b.resume();
    await tick();
    expect(s.calls).toHaveLength(2);
    s.calls[1]!.release();
    await c;
  });
});
