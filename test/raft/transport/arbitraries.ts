// fast-check generators for Raft messages as the core produces them.
import fc from 'fast-check';
import type { Entry, EntryType, Message, Snapshot, SnapshotMeta } from '../../../src/raft/core/types.js';
import { MESSAGE_TYPES } from '../../../src/raft/transport/codec.js';

// Well-formed Unicode only: lone surrogates cannot survive UTF-8 (see the codec's limitations).
const text = (maxLength: number) => fc.string({ unit: 'grapheme', maxLength });
export const nodeIdArb = fc.oneof(text(24), fc.constantFrom('manager-1', 'broker-2', 'n'));
export const groupArb = fc.oneof(text(40), fc.constantFrom('manager', 'partition-votes-3'));
/** Small numbers most of the time, and the extremes a JavaScript number can hold exactly. */
export const uintArb = fc.oneof(fc.nat(300), fc.nat(), fc.maxSafeNat(), fc.constant(Number.MAX_SAFE_INTEGER));

export const entryArb: fc.Arbitrary<Entry> = fc.record({
  term: uintArb,
  index: uintArb,
  type: fc.constantFrom(0 as EntryType, 1 as EntryType),
  data: fc.uint8Array({ maxLength: 300 }),
}, { noNullPrototype: true });

export const snapshotMetaArb: fc.Arbitrary<SnapshotMeta> = fc.record(
  {
    index: uintArb,
    term: uintArb,
    conf: fc.record(
      { voters: fc.array(nodeIdArb, { maxLength: 5 }), learners: fc.array(nodeIdArb, { maxLength: 3 }) },
      { noNullPrototype: true },
    ),
    addresses: fc.dictionary(nodeIdArb, text(30), { maxKeys: 5, noNullPrototype: true }),
  },
  { requiredKeys: ['index', 'term', 'conf'], noNullPrototype: true },
);

export const snapshotArb: fc.Arbitrary<Snapshot> = fc.record({
  meta: snapshotMetaArb,
  data: fc.uint8Array({ maxLength: 5000 }),
}, { noNullPrototype: true });

export const messageArb: fc.Arbitrary<Message> = fc.record(
  {
    type: fc.constantFrom(...MESSAGE_TYPES),
    from: nodeIdArb,
    to: nodeIdArb,
    term: uintArb,
    logTerm: uintArb,
    index: uintArb,
    entries: fc.array(entryArb, { maxLength: 8 }),
    commit: uintArb,
    reject: fc.boolean(),
    rejectHint: uintArb,
    logTermHint: uintArb,
    context: text(40),
    snapshot: snapshotArb,
    transfer: fc.boolean(),
  },
  { requiredKeys: ['type', 'from', 'to', 'term'], noNullPrototype: true },
);

export const envelopeArb = fc.record({ group: groupArb, msg: messageArb }, { noNullPrototype: true });

/**
 * A copy of `value` in which every Uint8Array is a tagged hex string: vitest
 * compares typed arrays element by element, which takes seconds for a
 * snapshot. The tag keeps Buffer and Uint8Array apart.
 */
export function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return `${value.constructor.name}:${Buffer.from(value.buffer, value.byteOffset, value.length).toString('hex')}`;
  if (Array.isArray(value)) return value.map(comparable);
  if (typeof value === 'object' && value !== null) {
    expectPlainObject(value);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]));
  }
  return value;
}

function expectPlainObject(value: object): void {
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw new Error(`unexpected object type ${String(proto?.constructor?.name)}`);
}
