import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Message, MessageType } from '../../../src/raft/core/types.js';
import {
  CodecError,
  ENCODED_MESSAGE_FIELDS,
  FrameKind,
  MESSAGE_TYPES,
  decodeBatchBody,
  decodeEnvelope,
  decodeHello,
  encodeBatchFrame,
  encodeEnvelope,
  encodeHello,
  measureEnvelope,
} from '../../../src/raft/transport/codec.js';
import { FrameReader } from '../../../src/raft/transport/frame-reader.js';
import { comparable, envelopeArb, groupArb, messageArb } from './arbitraries.js';

const bytes = (...xs: number[]) => new Uint8Array(xs);

/** A realistic message of each type, every optional field the type uses set. */
function sampleMessage(type: MessageType): Message {
  const base = { type, from: 'broker-1', to: 'broker-2', term: 7 };
  switch (type) {
    case 'app':
      return {
        ...base,
        logTerm: 6,
        index: 41,
        commit: 40,
        entries: [
          { term: 7, index: 42, type: 0, data: bytes(0, 1, 2, 255, 254, 0) },
          { term: 7, index: 43, type: 1, data: new TextEncoder().encode('{"type":"addVoter","node":"broker-4"}') },
          { term: 7, index: 44, type: 0, data: new Uint8Array(0) },
        ],
      };
    case 'appResp':
      return { ...base, index: 41, reject: true, rejectHint: 30, logTermHint: 5 };
    case 'vote':
    case 'preVote':
      return { ...base, logTerm: 6, index: 44, transfer: true };
    case 'voteResp':
    case 'preVoteResp':
      return { ...base, reject: false };
    case 'heartbeat':
      return { ...base, commit: 44, context: 'read-17' };
    case 'heartbeatResp':
      return { ...base, context: 'read-17' };
    case 'snap':
      return {
        ...base,
        snapshot: {
          meta: {
            index: 1000,
            term: 6,
            conf: { voters: ['broker-1', 'broker-2', 'broker-3'], learners: ['broker-4'] },
            addresses: { 'broker-1': '10.0.0.1:7000', 'broker-4': '[::1]:7004' },
          },
          data: Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff),
        },
      };
    case 'timeoutNow':
      return base;
    case 'readIndex':
      return { ...base, context: 'req-ü-9' };
    case 'readIndexResp':
      return { ...base, index: 44, context: 'req-ü-9' };
    default:
      // A new MessageType: give it a sample here.
      return base;
  }
}

describe('codec: envelopes', () => {
  it.each(MESSAGE_TYPES.map((t) => [t]))('round-trips a %s message', (type) => {
    const msg = sampleMessage(type);
    const buf = encodeEnvelope('partition-votes-3', msg);
    expect(buf.length).toBe(measureEnvelope('partition-votes-3', msg));
    expect(comparable(decodeEnvelope(buf))).toStrictEqual(comparable({ group: 'partition-votes-3', msg }));
  });

  it('round-trips a message with every field set', () => {
    const msg: Message = {
      ...sampleMessage('app'),
      reject: false,
      rejectHint: 0,
      logTermHint: 0,
      context: '',
      snapshot: sampleMessage('snap').snapshot!,
      transfer: false,
    };
    // Guards the test itself: it must cover every field the codec knows.
    expect(Object.keys(msg).sort()).toEqual(Object.keys(ENCODED_MESSAGE_FIELDS).sort());
    expect(comparable(decodeEnvelope(encodeEnvelope('g', msg)))).toStrictEqual(comparable({ group: 'g', msg }));
  });

  it('decodes entry data as an independent copy', () => {
    const msg = sampleMessage('app');
    const buf = encodeEnvelope('g', msg);
    const decoded = decodeEnvelope(buf);
    buf.fill(0);
    expect(decoded.msg.entries![0]!.data).toEqual(bytes(0, 1, 2, 255, 254, 0));
    expect(decoded.msg.entries![0]!.data.buffer).not.toBe(buf.buffer);
  });

  it('keeps small messages small (varints, no JSON)', () => {
    const hb: Message = { type: 'heartbeat', from: 'b1', to: 'b2', term: 3, commit: 120 };
    expect(encodeEnvelope('p1', hb).length).toBeLessThanOrEqual(16);
    const app: Message = {
      type: 'app',
      from: 'b1',
      to: 'b2',
      term: 3,
      logTerm: 3,
      index: 99,
      commit: 99,
      entries: [{ term: 3, index: 100, type: 0, data: new Uint8Array(100) }],
    };
    // 100 bytes of payload plus at most ~25 bytes of overhead.
    expect(encodeEnvelope('p1', app).length).toBeLessThan(125);
  });

  it('round-trips arbitrary messages (property)', () => {
    fc.assert(
      fc.property(groupArb, messageArb, (group, msg) => {
        const buf = encodeEnvelope(group, msg);
        expect(buf.length).toBe(measureEnvelope(group, msg));
        expect(comparable(decodeEnvelope(buf))).toStrictEqual(comparable({ group, msg }));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses to encode what it cannot represent', () => {
    const ok: Message = { type: 'heartbeat', from: 'a', to: 'b', term: 1 };
    const bad: Array<[string, unknown]> = [
      ['negative term', { ...ok, term: -1 }],
      ['fractional index', { ...ok, index: 1.5 }],
      ['NaN commit', { ...ok, commit: Number.NaN }],
      ['term beyond 2^53', { ...ok, term: 2 ** 60 }],
      ['unknown type', { ...ok, type: 'gossip' }],
      ['non-string from', { ...ok, from: 42 }],
      ['entry data not bytes', { ...ok, entries: [{ term: 1, index: 1, type: 0, data: 'abc' }] }],
      ['entry type out of range', { ...ok, entries: [{ term: 1, index: 1, type: 300, data: new Uint8Array() }] }],
      ['snapshot meta with a BigInt', { ...ok, snapshot: { meta: { index: 1n }, data: new Uint8Array() } }],
    ];
    for (const [what, msg] of bad) {
      expect(() => encodeEnvelope('g', msg as Message), what).toThrow(CodecError);
    }
  });
});

describe('codec: batch frames', () => {
  it('round-trips batches through a frame reader fed in arbitrary chunks (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(envelopeArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }),
        (batches, cuts) => {
          const stream = Buffer.concat(batches.map((b) => encodeBatchFrame(b)));
          const reader = new FrameReader(1 << 20);
          const got: unknown[][] = [];
          let pos = 0;
          for (let i = 0; pos < stream.length; i++) {
            const n = cuts[i % cuts.length]!;
            reader.push(stream.subarray(pos, pos + n));
            pos += n;
            for (let f = reader.next(); f !== undefined; f = reader.next()) {
              expect(f.kind).toBe(FrameKind.Batch);
              got.push(decodeBatchBody(f.body));
            }
          }
          expect(reader.bufferedBytes).toBe(0);
          expect(comparable(got)).toStrictEqual(comparable(batches));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('rejects every truncation of a valid batch with a CodecError', () => {
    const frame = encodeBatchFrame(MESSAGE_TYPES.map((t) => ({ group: `g-${t}`, msg: sampleMessage(t) })).slice(0, 6));
    const body = frame.subarray(5);
    expect(() => decodeBatchBody(body)).not.toThrow();
    for (let n = 0; n < body.length; n++) {
      expect(() => decodeBatchBody(body.subarray(0, n)), `prefix of ${n} bytes`).toThrow(CodecError);
    }
  });

  it('rejects trailing bytes, a lying count and unknown flags', () => {
    const frame = encodeBatchFrame([{ group: 'g', msg: { type: 'heartbeat', from: 'a', to: 'b', term: 1 } }]);
    const body = Buffer.from(frame.subarray(5));
    expect(() => decodeBatchBody(Buffer.concat([body, Buffer.from([0])]))).toThrow(/trailing/);
    const twice = Buffer.from(body);
    twice.writeUInt32BE(2, 0);
    expect(() => decodeBatchBody(twice)).toThrow(CodecError);
    const huge = Buffer.from(body);
    huge.writeUInt32BE(0xffffffff, 0);
    expect(() => decodeBatchBody(huge)).toThrow(/count/);
    // body: count(4) group(2) type(1) flags(2) ...
    const flags = Buffer.from(body);
    flags[8] = 0x80;
    expect(() => decodeBatchBody(flags)).toThrow(/flags/);
    const type = Buffer.from(body);
    type[6] = 200;
    expect(() => decodeBatchBody(type)).toThrow(/type code/);
  });

  it('rejects bad snapshot metadata', () => {
    const msg = sampleMessage('snap');
    const good = encodeEnvelope('g', msg);
    const json = JSON.stringify(msg.snapshot!.meta);
    const at = good.indexOf(json);
    expect(at).toBeGreaterThan(0);
    const broken = Buffer.from(good);
    broken.write('X', at); // '{' -> 'X': no longer JSON
    expect(() => decodeEnvelope(broken)).toThrow(/snapshot meta/);
  });

  it('never throws anything but CodecError on garbage (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => {
        for (const decode of [decodeBatchBody, decodeEnvelope, decodeHello]) {
          try {
            decode(Buffer.from(garbage));
          } catch (err) {
            expect(err).toBeInstanceOf(CodecError);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('survives bit flips in valid frames: CodecError or a decoded batch, nothing else (property)', () => {
    fc.assert(
      fc.property(fc.array(envelopeArb, { minLength: 1, maxLength: 3 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (envs, at, bit) => {
        const body = Buffer.from(encodeBatchFrame(envs).subarray(5));
        const i = at % body.length;
        body[i] = body[i]! ^ (1 << bit);
        try {
          decodeBatchBody(body);
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('codec: frame reader', () => {
  it('refuses an oversized length as soon as the 4 length bytes arrive', () => {
    const reader = new FrameReader(1024);
    reader.push(Buffer.from([0, 0, 4]));
    expect(reader.next()).toBeUndefined();
    reader.push(Buffer.from([1])); // 1025
    expect(() => reader.next()).toThrow(/exceeds the limit of 1024/);
  });

  it('refuses a zero length', () => {
    const reader = new FrameReader(1024);
    reader.push(Buffer.from([0, 0, 0, 0, 9]));
    expect(() => reader.next()).toThrow(/length 0/);
  });

  it('waits for a frame split across many chunks', () => {
    const frame = encodeHello('a', 'b');
    const reader = new FrameReader(1024);
    for (let i = 0; i < frame.length - 1; i++) {
      reader.push(frame.subarray(i, i + 1));
      expect(reader.next()).toBeUndefined();
    }
    reader.push(frame.subarray(frame.length - 1));
    const f = reader.next()!;
    expect(f.kind).toBe(FrameKind.Hello);
    expect(decodeHello(f.body)).toEqual({ version: 1, from: 'a', to: 'b' });
  });

  it('rejects a peer that is not a dvote transport', () => {
    const reader = new FrameReader(1024);
    reader.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    // "GET " as a length is ~1.2 GB.
    expect(() => reader.next()).toThrow(CodecError);
  });
});

describe('codec: decoding many distinct strings and payloads', () => {
  it('decodes thousands of distinct group names correctly (string cache collisions)', () => {
    const envs = Array.from({ length: 5000 }, (_, i) => ({
      group: `partition-${i}-${'x'.repeat(i % 40)}`,
      msg: { type: 'heartbeat' as const, from: `n${i % 97}`, to: `n${(i * 7) % 101}`, term: i },
    }));
    const got = decodeBatchBody(encodeBatchFrame(envs).subarray(5));
    const wrong = got.filter((e, i) => e.group !== envs[i]!.group || e.msg.from !== envs[i]!.msg.from || e.msg.to !== envs[i]!.msg.to);
    expect(wrong).toEqual([]);
  });

  it('keeps every payload intact across slab boundaries and for large entries', () => {
    const sizes = [0, 1, 63, 64, 65, 100, 4096, 4097, 70_000];
    const entries = Array.from({ length: 3000 }, (_, i) => {
      const n = sizes[i % sizes.length]!;
      return { term: 1, index: i + 1, type: 0 as const, data: Uint8Array.from({ length: n }, (_, j) => (i + j) & 0xff) };
    });
    const envs = [];
    for (let i = 0; i < entries.length; i += 50) {
      envs.push({ group: 'g', msg: { type: 'app' as const, from: 'a', to: 'b', term: 1, entries: entries.slice(i, i + 50) } });
    }
    const got = decodeBatchBody(encodeBatchFrame(envs).subarray(5)).flatMap((e) => e.msg.entries!);
    const bad = got.filter((e, i) => !Buffer.from(e.data).equals(Buffer.from(entries[i]!.data)) || e.index !== i + 1);
    expect(got).toHaveLength(entries.length);
    expect(bad.map((e) => e.index)).toEqual([]);
  });
});
