import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Message } from '../../../src/raft/core/types.js';
import { BATCH_HEADER_BYTES, FrameKind, decodeBatchBody, measureEnvelope } from '../../../src/raft/transport/codec.js';
import { FrameReader } from '../../../src/raft/transport/frame-reader.js';
import { SendQueue } from '../../../src/raft/transport/send-queue.js';
import { comparable, envelopeArb } from './arbitraries.js';

describe('SendQueue', () => {
  it('cuts a stream into frames near the target size that decode to the same messages (property)', () => {
    fc.assert(
      fc.property(
        fc.array(envelopeArb, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 16, max: 4096 }),
        fc.integer({ min: 1, max: 3 }),
        (envs, target, drains) => {
          const maxFrame = 1 << 20;
          const q = new SendQueue(maxFrame, target);
          const frames: Buffer[] = [];
          let queued = 0;
          let pending = 0;
          envs.forEach((e, i) => {
            const size = measureEnvelope(e.group, e.msg);
            q.push(e.group, e.msg, size);
            queued += size;
            pending++;
            expect(q.bytes).toBe(queued);
            if (i % drains === 0) {
              const d = q.drain();
              expect(d.messages).toBe(pending);
              expect(d.bytes).toBe(queued + d.frames.length * BATCH_HEADER_BYTES);
              frames.push(...d.frames);
              queued = 0;
              pending = 0;
            }
          });
          frames.push(...q.drain().frames);
          expect(q.messages).toBe(0);
          expect(q.bytes).toBe(0);

          const reader = new FrameReader(maxFrame);
          const got = [];
          for (const f of frames) {
            const envelopes = decodeBatchBody(f.subarray(5));
            // A frame exceeds the target only when it holds a single, larger message.
            if (f.length > target) expect(envelopes.length).toBe(1);
            reader.push(f);
            const frame = reader.next()!;
            expect(frame.kind).toBe(FrameKind.Batch);
            got.push(...decodeBatchBody(frame.body));
          }
          expect(comparable(got)).toStrictEqual(comparable(envs));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a message larger than a frame, and clear() reports what it discarded', () => {
    const q = new SendQueue(100, 64);
    const msg: Message = { type: 'app', from: 'a', to: 'b', term: 1, entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(200) }] };
    expect(() => q.push('g', msg, measureEnvelope('g', msg))).toThrow(RangeError);
    expect(q.maxEnvelopeBytes).toBe(100 - (BATCH_HEADER_BYTES - 4));
    const small = { type: 'heartbeat' as const, from: 'a', to: 'b', term: 1 };
    for (let i = 0; i < 10; i++) q.push('g', small, measureEnvelope('g', small));
    expect(q.messages).toBe(10);
    expect(q.clear()).toBe(10);
    expect(q.drain().frames).toEqual([]);
  });
});
