import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrames, encodeFrames, FrameError } from '../../src/services/broker/message-frames.js';
import {
  encodeAppend,
  encodeAppendFramed,
  encodeControl,
  encodeMultiAppend,
  PartitionStateMachine,
  PRODUCER_WINDOW,
  type ControlCommand,
} from '../../src/services/broker/partition-state-machine.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const vals = (...s: string[]) => s.map((x) => enc.encode(x));
const text = (a: Uint8Array[]) => a.map((x) => dec.decode(x));

describe('message frames', () => {
  it('round-trips, including empty values', () => {
    const v = vals('a', '', 'hello world');
    expect(text(decodeFrames(encodeFrames(v)))).toEqual(['a', '', 'hello world']);
    expect(decodeFrames(new Uint8Array(0))).toEqual([]);
  });

  it('rejects truncated frames and oversized values', () => {
    const f = encodeFrames(vals('abcdef'));
    expect(() => decodeFrames(f.subarray(0, 3))).toThrow(FrameError);
    expect(() => decodeFrames(f.subarray(0, 7))).toThrow(/claims 6 bytes/);
    expect(() => decodeFrames(f, { maxValueBytes: 5 })).toThrow(/limit is 5/);
    expect(() => decodeFrames(encodeFrames(vals('a', 'b', 'c')), { maxCount: 2 })).toThrow(/more than 2/);
  });

  it('property: any list of byte strings round-trips', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 }), (list) => {
        expect(decodeFrames(encodeFrames(list)).map((x) => [...x])).toEqual(list.map((x) => [...x]));
      }),
    );
  });
});

describe('PartitionStateMachine', () => {
  it('assigns dense offsets from 0 and reads them back', () => {
    const sm = new PartitionStateMachine();
    expect(sm.apply(encodeAppend(vals('a', 'b')))).toEqual({ ok: true, firstOffset: 0, lastOffset: 1, duplicate: false });
    expect(sm.apply(encodeAppendFramed(encodeFrames(vals('c'))))).toEqual({ ok: true, firstOffset: 2, lastOffset: 2, duplicate: false });
    expect(sm.highWatermark).toBe(3);
    expect(text(sm.read(1, 10))).toEqual(['b', 'c']);
    expect(text(sm.read(0, 2))).toEqual(['a', 'b']);
    expect(text(sm.read(0, 10, 1))).toEqual(['a']);
  });

  it('stores a retried (producer, seq) once and answers with the original offsets, in any order', () => {
    const sm = new PartitionStateMachine();
    const p = { id: 'p1', seq: 2 };
    expect(sm.apply(encodeAppend(vals('x', 'y'), p))).toMatchObject({ firstOffset: 0, lastOffset: 1, duplicate: false });
    expect(sm.apply(encodeAppend(vals('z'), { id: 'p1', seq: 1 }))).toMatchObject({ firstOffset: 2, lastOffset: 2, duplicate: false });
    expect(sm.apply(encodeAppend(vals('x', 'y'), p))).toEqual({ ok: true, firstOffset: 0, lastOffset: 1, duplicate: true });
    expect(sm.apply(encodeAppend(vals('x', 'y'), { id: 'p2', seq: 2 }))).toMatchObject({ firstOffset: 3, duplicate: false });
    expect(sm.highWatermark).toBe(5);
  });

  it('applies coalesced appends in order, each with its own offsets and deduplication', () => {
    const sm = new PartitionStateMachine();
    const a = encodeAppend(vals('a1', 'a2'), { id: 'pa', seq: 0 });
    const b = encodeAppend(vals('b1'), { id: 'pb', seq: 0 });
    expect(sm.apply(encodeMultiAppend([a, b, a]))).toEqual([
      { ok: true, firstOffset: 0, lastOffset: 1, duplicate: false },
      { ok: true, firstOffset: 2, lastOffset: 2, duplicate: false },
      { ok: true, firstOffset: 0, lastOffset: 1, duplicate: true },
    ]);
    expect(text(sm.read(0, 10))).toEqual(['a1', 'a2', 'b1']);
    expect(sm.apply(b)).toMatchObject({ duplicate: true, firstOffset: 2 });
  });

  it('refuses a sequence older than the window instead of risking a duplicate', () => {
    const sm = new PartitionStateMachine();
    for (let s = 0; s <= PRODUCER_WINDOW; s++) sm.apply(encodeAppend(vals('m'), { id: 'p', seq: s + 10 }));
    const hw = sm.highWatermark;
    const r = sm.apply(encodeAppend(vals('old'), { id: 'p', seq: 5 }));
    expect(r).toMatchObject({ ok: false, status: 409 });
    expect(sm.highWatermark).toBe(hw);
    // The forgotten oldest one too.
    expect(sm.apply(encodeAppend(vals('m'), { id: 'p', seq: 10 }))).toMatchObject({ ok: false });
  });

  it('dequeues per consumer, repeats a retried dequeue, reports unknown consumers', () => {
    const sm = new PartitionStateMachine();
    sm.apply(encodeAppend(vals('a', 'b', 'c')));
    expect(sm.apply(encodeControl({ c: 'dequeue', consumer: 'c1', max: 1 }))).toMatchObject({ ok: false, status: 404 });
    expect(sm.apply(encodeControl({ c: 'register', consumer: 'c1' }))).toMatchObject({ ok: true, offset: 0, created: true });
    expect(sm.apply(encodeControl({ c: 'register', consumer: 'c1' }))).toMatchObject({ ok: true, created: false });
    expect(sm.apply(encodeControl({ c: 'register', consumer: 'late', from: 'latest' }))).toMatchObject({ offset: 3 });
    expect(sm.apply(encodeControl({ c: 'dequeue', consumer: 'c1', max: 2, rid: 'r1' }))).toMatchObject({ from: 0, count: 2, offset: 2, repeated: false });
    expect(sm.apply(encodeControl({ c: 'dequeue', consumer: 'c1', max: 2, rid: 'r1' }))).toMatchObject({ from: 0, count: 2, offset: 2, repeated: true });
    expect(sm.apply(encodeControl({ c: 'dequeue', consumer: 'c1', max: 5, rid: 'r2' }))).toMatchObject({ from: 2, count: 1, offset: 3 });
    expect(sm.apply(encodeControl({ c: 'dequeue', consumer: 'c1', max: 5, rid: 'r3' }))).toMatchObject({ from: 3, count: 0 });
    expect(sm.consumerOffset('c1')).toBe(3);
  });

  it('commits offsets within [0, high watermark] only', () => {
    const sm = new PartitionStateMachine();
    sm.apply(encodeAppend(vals('a', 'b')));
    sm.apply(encodeControl({ c: 'register', consumer: 'group:g' }));
    expect(sm.apply(encodeControl({ c: 'commit', consumer: 'group:g', offset: 2 }))).toEqual({ ok: true, c: 'commit', offset: 2 });
    expect(sm.apply(encodeControl({ c: 'commit', consumer: 'group:g', offset: 3 }))).toMatchObject({ ok: false, status: 400 });
    expect(sm.apply(encodeControl({ c: 'commit', consumer: 'nobody', offset: 0 }))).toMatchObject({ ok: false, status: 404 });
    expect(sm.consumerOffset('group:g')).toBe(2);
  });

  it('snapshot/restore gives the same state; a restored replica answers retries identically', () => {
    const a = new PartitionStateMachine();
    a.apply(encodeAppend(vals('a', 'bb'), { id: 'p', seq: 1 }));
    a.apply(encodeControl({ c: 'register', consumer: 'c' }));
    a.apply(encodeControl({ c: 'dequeue', consumer: 'c', max: 1, rid: 'r' }));
    const b = new PartitionStateMachine();
    b.apply(encodeAppend(vals('junk')));
    b.restore(a.snapshot());
    expect(b.highWatermark).toBe(2);
    expect(b.totalBytes).toBe(3);
    expect(text(b.read(0, 10))).toEqual(['a', 'bb']);
    expect(b.apply(encodeAppend(vals('a', 'bb'), { id: 'p', seq: 1 }))).toMatchObject({ duplicate: true, firstOffset: 0 });
    expect(b.apply(encodeControl({ c: 'dequeue', consumer: 'c', max: 1, rid: 'r' }))).toMatchObject({ repeated: true, from: 0 });
    expect(b.snapshot()).toEqual(a.snapshot());
  });

  it('property: a replica restored from a snapshot at any point stays identical to one that applied everything', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('append' as const), values: fc.array(fc.string({ maxLength: 6 }), { maxLength: 4 }), pid: fc.constantFrom('p1', 'p2', null), seq: fc.nat(20) }),
      fc.record({ kind: fc.constant('control' as const), cmd: fc.oneof(
        fc.record({ c: fc.constant('register' as const), consumer: fc.constantFrom('c1', 'c2') }),
        fc.record({ c: fc.constant('dequeue' as const), consumer: fc.constantFrom('c1', 'c2', 'c3'), max: fc.nat(4), rid: fc.constantFrom('r1', 'r2', 'r3') }),
        fc.record({ c: fc.constant('commit' as const), consumer: fc.constantFrom('c1', 'c2'), offset: fc.nat(8) }),
      ) as fc.Arbitrary<ControlCommand> }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.nat(40), (ops, cut) => {
        const encoded = ops.map((o) =>
          o.kind === 'append' ? encodeAppend(vals(...o.values), o.pid ? { id: o.pid, seq: o.seq } : undefined) : encodeControl(o.cmd),
        );
        const full = new PartitionStateMachine();
        const fullResults = encoded.map((e) => full.apply(e));
        const first = new PartitionStateMachine();
        const at = Math.min(cut, encoded.length);
        encoded.slice(0, at).forEach((e) => first.apply(e));
        const second = new PartitionStateMachine();
        second.restore(first.snapshot());
        const rest = encoded.slice(at).map((e) => second.apply(e));
        expect(rest).toEqual(fullResults.slice(at));
        expect(second.snapshot()).toEqual(full.snapshot());
        // Offsets stay dense and every stored message is readable.
        expect(full.read(0, 1e9)).toHaveLength(full.highWatermark);
      }),
      { numRuns: 300 },
    );
  });
});
