// The vote log's entries and the apply rule every copy uses (pure).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeBarrier, encodeVote, planApply, type BarrierState } from '../../src/services/shard/vote-log-codec.js';

const vote = (voterId: number, choice: number, epoch: number, writer: number, castAtUs = 1_700_000_000_000_000 + voterId) =>
  encodeVote({ voterId, choice, epoch, writer, castAtUs });
const barrier = (epoch: number, writer: number) => encodeBarrier({ epoch, writer, atMs: 1 });

describe('vote log entries', () => {
  it('round-trip votes and barriers exactly (ids up to 2^53-1, microsecond times)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 1, max: 0xffff_ffff }),
        fc.integer({ min: 1, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 4_102_444_800_000_000 }),
        (voterId, choice, epoch, writer, castAtUs) => {
          expect(decodeEntry(encodeVote({ voterId, choice, epoch, writer, castAtUs }))).toEqual({ kind: 'vote', voterId, choice, epoch, writer, castAtUs });
          expect(decodeEntry(encodeBarrier({ epoch, writer, atMs: 5 }))).toEqual({ kind: 'barrier', epoch, writer, atMs: 5 });
        },
      ),
    );
  });

  it('anything else decodes to null', () => {
    expect(decodeEntry(new Uint8Array(0))).toBeNull();
    expect(decodeEntry(new TextEncoder().encode('{"voterId":1}'))).toBeNull();
    expect(decodeEntry(vote(1, 1, 1, 1).slice(0, 27))).toBeNull();
  });
});

describe('planApply (the rule every copy applies the log with)', () => {
  const none: BarrierState = { epoch: 0, writer: 0 };

  it('counts votes only under the barrier of their own writer and epoch; nothing before the first barrier', () => {
    const p = planApply([vote(1, 1, 1, 7), barrier(1, 7), vote(2, 2, 1, 7), vote(3, 1, 1, 8), vote(4, 1, 2, 7)], none);
    expect(p.votes.map((v) => v.voterId)).toEqual([2]);
    expect(p.skipped).toBe(3);
    expect(p.state).toEqual({ epoch: 1, writer: 7 });
  });

  it('first entry of a voter wins, in log order', () => {
    const p = planApply([barrier(1, 7), vote(5, 2, 1, 7), vote(6, 1, 1, 7), vote(5, 3, 1, 7)], none);
    expect(p.votes.map((v) => [v.voterId, v.choice])).toEqual([
      [5, 2],
      [6, 1],
    ]);
  });

  it('late entries of a deposed epoch or a dead writer count nowhere; a late older barrier changes nothing', () => {
    const p = planApply([barrier(1, 7), vote(1, 1, 1, 7), barrier(2, 7), vote(2, 1, 1, 7), barrier(1, 7), vote(3, 1, 2, 7), barrier(2, 9), vote(4, 1, 2, 7), vote(5, 1, 2, 9)], none);
    expect(p.votes.map((v) => v.voterId)).toEqual([1, 3, 5]);
    expect(p.state).toEqual({ epoch: 2, writer: 9 });
    expect(p.barriers).toEqual([
      { epoch: 1, writer: 7 },
      { epoch: 2, writer: 7 },
      { epoch: 2, writer: 9 },
    ]);
  });

  it('is the same whether the log is applied in one batch or cut anywhere (a seeded copy continues from the stored state)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ b: fc.constant(true), epoch: fc.integer({ min: 1, max: 3 }), writer: fc.integer({ min: 1, max: 2 }) }),
            fc.record({ b: fc.constant(false), id: fc.integer({ min: 1, max: 20 }), epoch: fc.integer({ min: 1, max: 3 }), writer: fc.integer({ min: 1, max: 2 }) }),
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 0, max: 60 }),
        (items, cut) => {
          const msgs = items.map((x) => ('id' in x ? vote(x.id, 1, x.epoch, x.writer) : barrier(x.epoch, x.writer)));
          const whole = planApply(msgs, none);
          const first = planApply(msgs.slice(0, cut), none);
          const second = planApply(msgs.slice(cut), first.state);
          const applied = new Set(first.votes.map((v) => v.voterId));
          const merged = [...first.votes.map((v) => v.voterId), ...second.votes.map((v) => v.voterId).filter((id) => !applied.has(id))];
          expect(merged).toEqual(whole.votes.map((v) => v.voterId));
          expect(second.state).toEqual(whole.state);
        },
      ),
    );
  });
});
