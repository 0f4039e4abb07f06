import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  HistoryRecorder,
  checkEvents,
  checkOperations,
  type HistoryEvent,
  type Model,
  type Operation,
} from '../utils/linearizability.js';
import { createKvModel, kvModel, type KvInput, type KvOperation, type KvOutput, type KvState, type KvTxnOp } from '../utils/kv-model.js';
import { checkBankInvariants, createBankModel, type BankOperation } from '../utils/bank-check.js';

// ---------------------------------------------------------------- helpers

const get = (key: string, value: string | null, call: number, ret: number): KvOperation => ({
  input: { type: 'get', key },
  output: { type: 'get', value },
  call,
  return: ret,
});
const put = (key: string, value: string, call: number, ret: number): KvOperation => ({
  input: { type: 'put', key, value },
  output: { type: 'put' },
  call,
  return: ret,
});
const del = (key: string, call: number, ret: number, existed?: boolean): KvOperation => ({
  input: { type: 'delete', key },
  output: existed === undefined ? { type: 'delete' } : { type: 'delete', existed },
  call,
  return: ret,
});
const cas = (key: string, expected: string | null, value: string, ok: boolean, call: number, ret: number, current?: string | null): KvOperation => ({
  input: { type: 'cas', key, expected, value },
  output: current === undefined ? { type: 'cas', ok } : { type: 'cas', ok, current },
  call,
  return: ret,
});
/** An operation whose response never came: it may or may not have taken effect. */
const unknown = (input: KvInput, call: number): KvOperation => ({ input, call, return: Infinity });

const check = (ops: KvOperation[], model: Model<KvState, KvInput, KvOutput> = kvModel) => checkOperations(model, ops, { timeoutMs: 10_000 });
const verdict = (ops: KvOperation[], model?: Model<KvState, KvInput, KvOutput>) => check(ops, model).result;

/** Deterministic PRNG so that a failing seed replays exactly. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- hand-written histories

describe('linearizability checker: single key', () => {
  it('accepts the empty history and a sequential one', () => {
    expect(verdict([])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), get('x', '1', 2, 3), del('x', 4, 5), get('x', null, 6, 7)])).toBe('ok');
  });

  it('rejects the classic stale read: put x=1 completed, a later get returns the older value', () => {
    const history = [put('x', '0', 0, 1), put('x', '1', 2, 3), get('x', '0', 4, 5)];
    const result = check(history);
    expect(result.result).toBe('illegal');
    if (result.result !== 'illegal') return;
    const { explanation } = result;
    expect(explanation.partition).toBe('key "x"');
    expect(explanation.longestPrefix.map((op) => op.input)).toEqual([history[0]!.input, history[1]!.input]);
    expect(explanation.stateAfterPrefix).toBe('{"x": "1"}');
    expect(explanation.candidates).toEqual([{ operation: history[2], rejectedAfterPrefix: true }]);
    expect(explanation.text).toContain('get(x) -> "0"');
    expect(explanation.text).toContain('impossible in that state');
  });

  it('rejects a read of a value nobody wrote and a read of absent after a completed write', () => {
    expect(verdict([put('x', '1', 0, 1), get('x', '2', 2, 3)])).toBe('illegal');
    expect(verdict([put('x', '1', 0, 1), get('x', null, 2, 3)])).toBe('illegal');
  });

  it('orders a get concurrent with a put either way', () => {
    expect(verdict([put('x', '1', 0, 10), get('x', null, 2, 3)])).toBe('ok');
    expect(verdict([put('x', '1', 0, 10), get('x', '1', 2, 3)])).toBe('ok');
    // ...but once a read saw the new value, a later read cannot see the old one.
    expect(verdict([put('x', '1', 0, 10), get('x', '1', 2, 3), get('x', null, 4, 5)])).toBe('illegal');
  });

  it('orders two concurrent puts either way, but only one way for everyone', () => {
    const puts = [put('x', 'a', 0, 10), put('x', 'b', 1, 9)];
    expect(verdict([...puts, get('x', 'a', 11, 12)])).toBe('ok');
    expect(verdict([...puts, get('x', 'b', 11, 12)])).toBe('ok');
    expect(verdict([...puts, get('x', 'a', 11, 12), get('x', 'b', 13, 14)])).toBe('illegal');
    // Two readers running side by side after both puts must agree.
    expect(verdict([...puts, get('x', 'a', 11, 14), get('x', 'b', 12, 13)])).toBe('illegal');
  });

  it('needs backtracking: the greedy first choice is wrong', () => {
    // Both puts are concurrent with each other; the reads force b before a.
    const history = [put('x', 'a', 0, 10), put('x', 'b', 0, 10), get('x', 'b', 1, 2), get('x', 'a', 11, 12)];
    expect(verdict(history)).toBe('ok');
  });

  it('treats operations that touch at one instant as concurrent', () => {
    expect(verdict([put('x', '1', 0, 5), get('x', null, 5, 6)])).toBe('ok');
    expect(verdict([put('x', '1', 0, 5), get('x', null, 6, 7)])).toBe('illegal');
  });

  it('checks what a delete reports', () => {
    expect(verdict([put('x', '1', 0, 1), del('x', 2, 3, true), del('x', 4, 5, false)])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), del('x', 2, 3, false)])).toBe('illegal');
  });

  it('starts from the initial keys it is given', () => {
    const model = createKvModel({ initial: { x: 'seed' } });
    expect(verdict([get('x', 'seed', 0, 1)], model)).toBe('ok');
    expect(verdict([get('x', null, 0, 1)], model)).toBe('illegal');
  });
});

describe('linearizability checker: unknown outcomes', () => {
  const lost = unknown({ type: 'put', key: 'x', value: '1' }, 0);

  it('lets a write whose outcome is unknown take effect', () => {
    expect(verdict([lost, get('x', '1', 5, 6)])).toBe('ok');
  });

  it('lets a write whose outcome is unknown never take effect', () => {
    expect(verdict([lost, get('x', null, 5, 6), get('x', null, 100, 101)])).toBe('ok');
  });

  it('lets it take effect late, after reads that missed it', () => {
    expect(verdict([lost, get('x', null, 5, 6), get('x', '1', 100, 101)])).toBe('ok');
  });

  it('does not let it take effect twice or be undone', () => {
    expect(verdict([lost, get('x', '1', 5, 6), get('x', null, 7, 8)])).toBe('illegal');
  });

  it('does not let it take effect before it was called', () => {
    expect(verdict([get('x', '1', 0, 1), unknown({ type: 'put', key: 'x', value: '1' }, 2)])).toBe('illegal');
  });

  it('lets an unknown CAS either swap or not', () => {
    const maybeSwap = unknown({ type: 'cas', key: 'x', expected: '1', value: '2' }, 2);
    expect(verdict([put('x', '1', 0, 1), maybeSwap, get('x', '2', 5, 6)])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), maybeSwap, get('x', '1', 5, 6)])).toBe('ok');
    // Its precondition never held, so it cannot have swapped.
    expect(verdict([put('x', '3', 0, 1), maybeSwap, get('x', '2', 5, 6)])).toBe('illegal');
  });

  it('lets an unknown delete happen or not', () => {
    const maybeDelete = unknown({ type: 'delete', key: 'x' }, 2);
    expect(verdict([put('x', '1', 0, 1), maybeDelete, get('x', null, 5, 6)])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), maybeDelete, get('x', '1', 5, 6), get('x', null, 7, 8)])).toBe('ok');
  });

  it('falls back on the full history when a lost write was observed in a way values do not show', () => {
    // The CAS expecting absence failed without saying why: only the write
    // whose outcome is unknown can explain it, though nobody read its value.
    const lost = unknown({ type: 'put', key: 'x', value: '1' }, 0);
    expect(verdict([lost, cas('x', null, '2', false, 5, 6)])).toBe('ok');
    expect(verdict([cas('x', null, '2', false, 5, 6)])).toBe('illegal');
  });

  it('guesses which unknown-outcome writes nobody observed', () => {
    const drop = kvModel.dropUnobserved!;
    const lost = unknown({ type: 'put', key: 'x', value: 'lost' }, 0);
    const seen = unknown({ type: 'put', key: 'x', value: 'seen' }, 0);
    const reads = [get('x', 'seen', 5, 6), get('y', null, 5, 6)];
    expect(drop([lost, seen, ...reads])).toEqual([seen, ...reads]);
    // A delete that found the key may have found the lost write.
    expect(drop([lost, del('x', 5, 6, true)])).toEqual([lost, del('x', 5, 6, true)]);
    // So may a CAS that failed without saying what it found, but not one that did.
    expect(drop([lost, cas('x', 'a', 'b', false, 5, 6)])).toHaveLength(2);
    expect(drop([lost, cas('x', 'a', 'b', false, 5, 6, null)])).toHaveLength(1);
  });

  it('ignores reads whose outcome is unknown', () => {
    const many = Array.from({ length: 200 }, (_, i) => unknown({ type: 'get', key: 'x' }, i));
    expect(verdict([put('x', '1', 0, 1), ...many, get('x', '1', 300, 301)])).toBe('ok');
  });
});

describe('linearizability checker: compare-and-swap', () => {
  it('lets exactly one of two racing creates win', () => {
    expect(verdict([cas('x', null, 'a', true, 0, 10), cas('x', null, 'b', false, 1, 9, 'a'), get('x', 'a', 11, 12)])).toBe('ok');
    expect(verdict([cas('x', null, 'a', true, 0, 10), cas('x', null, 'b', true, 1, 9)])).toBe('illegal');
  });

  it('checks the current value a failed CAS reports', () => {
    expect(verdict([put('x', '1', 0, 1), cas('x', '0', '2', false, 2, 3, '1')])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), cas('x', '0', '2', false, 2, 3, '7')])).toBe('illegal');
    expect(verdict([put('x', '1', 0, 1), cas('x', '1', '2', false, 2, 3)])).toBe('illegal');
  });

  it('accepts a CAS chain and rejects a lost update', () => {
    const chain = [put('x', '0', 0, 1), cas('x', '0', '1', true, 2, 6), cas('x', '1', '2', true, 3, 8), get('x', '2', 9, 10)];
    expect(verdict(chain)).toBe('ok');
    // Two increments from the same value cannot both succeed.
    expect(verdict([put('x', '0', 0, 1), cas('x', '0', '1', true, 2, 6), cas('x', '0', '1', true, 3, 8)])).toBe('illegal');
  });
});

describe('linearizability checker: transactions', () => {
  const model = createKvModel({ initial: { x: '1', y: '1' } });
  const moveBoth: KvOperation = {
    input: {
      type: 'txn',
      compares: [{ key: 'x', value: '1' }],
      success: [
        { type: 'put', key: 'x', value: '2' },
        { type: 'put', key: 'y', value: '2' },
      ],
    },
    output: { type: 'txn', succeeded: true },
    call: 0,
    return: 10,
  };

  it('accepts reads on either side of an atomic multi-key transaction', () => {
    expect(verdict([moveBoth, get('x', '1', 1, 2), get('y', '1', 3, 4)], model)).toBe('ok');
    expect(verdict([moveBoth, get('x', '2', 1, 2), get('y', '2', 3, 4)], model)).toBe('ok');
  });

  it('rejects a read that sees half of a transaction (needs the keys checked together)', () => {
    // x shows the transaction happened before 2, y shows it had not by 3.
    // Checked per key, each read alone has an explanation.
    const history = [moveBoth, get('x', '2', 1, 2), get('y', '1', 3, 4)];
    const result = check(history, model);
    expect(result.result).toBe('illegal');
    expect(result.partitions).toBe(1);
    if (result.result === 'illegal') expect(result.explanation.partition).toBe('keys "x", "y"');
  });

  it('keeps unrelated keys in separate partitions and merges keys a transaction joins', () => {
    const txn = (keys: string[]): KvOperation => ({
      input: { type: 'txn', compares: [], success: keys.map((key): KvTxnOp => ({ type: 'put', key, value: 'v' })) },
      output: { type: 'txn', succeeded: true },
      call: 0,
      return: 1,
    });
    expect(check([put('a', '1', 0, 1), put('b', '1', 0, 1), put('c', '1', 0, 1)]).partitions).toBe(3);
    expect(check([put('a', '1', 0, 1), put('b', '1', 0, 1), put('c', '1', 0, 1), txn(['a', 'c'])]).partitions).toBe(2);
    expect(check([txn(['a', 'b']), txn(['c', 'd']), txn(['b', 'c'])]).partitions).toBe(1);
  });

  it('does not commit early to an operation that an unknown-outcome transaction may precede', () => {
    // The lost transaction must come before the put: z shows it happened
    // before 12, and x still shows the put at 14.
    const lostTxn: KvOperation = unknown(
      { type: 'txn', compares: [], success: [{ type: 'put', key: 'x', value: '1' }, { type: 'put', key: 'z', value: 'u' }] },
      1,
    );
    expect(verdict([put('x', '2', 0, 10), lostTxn, get('z', 'u', 11, 12), get('x', '2', 13, 14)])).toBe('ok');
    expect(verdict([put('x', '2', 0, 10), lostTxn, get('z', 'u', 11, 12), get('x', '1', 13, 14)])).toBe('ok');
    expect(verdict([put('x', '2', 0, 10), lostTxn, get('x', '1', 11, 12), get('z', null, 13, 14)])).toBe('illegal');
  });

  it('treats a read that starts as a put ends as concurrent, also in a multi-key partition', () => {
    const joinXY: KvOperation = {
      input: { type: 'txn', compares: [], success: [{ type: 'put', key: 'x', value: '3' }, { type: 'put', key: 'y', value: '3' }] },
      output: { type: 'txn', succeeded: true },
      call: 20,
      return: 21,
    };
    expect(verdict([put('x', '2', 0, 10), get('x', null, 10, 11), joinXY])).toBe('ok');
    expect(verdict([put('x', '2', 0, 10), get('x', null, 11, 12), joinXY])).toBe('illegal');
  });

  it('checks the branch taken and the values read inside it', () => {
    const guarded = (succeeded: boolean, reads: Array<string | null>): KvOperation => ({
      input: {
        type: 'txn',
        compares: [{ key: 'x', value: '9' }],
        success: [{ type: 'put', key: 'y', value: 'won' }],
        failure: [{ type: 'get', key: 'x' }, { type: 'get', key: 'y' }],
      },
      output: { type: 'txn', succeeded, reads },
      call: 2,
      return: 3,
    });
    expect(verdict([put('x', '1', 0, 1), guarded(false, ['1', null])])).toBe('ok');
    expect(verdict([put('x', '1', 0, 1), guarded(true, [])])).toBe('illegal');
    expect(verdict([put('x', '1', 0, 1), guarded(false, ['2', null])])).toBe('illegal');
    // notEqual compares
    const ifAbsentNot: KvOperation = {
      input: { type: 'txn', compares: [{ key: 'x', value: null, op: 'notEqual' }], success: [{ type: 'delete', key: 'x' }] },
      output: { type: 'txn', succeeded: true },
      call: 2,
      return: 3,
    };
    expect(verdict([put('x', '1', 0, 1), ifAbsentNot, get('x', null, 4, 5)])).toBe('ok');
    expect(verdict([ifAbsentNot])).toBe('illegal');
  });
});

describe('linearizability checker: API', () => {
  it('checks call/return events; a call that never returned has an unknown outcome', () => {
    const events: HistoryEvent<KvInput, KvOutput>[] = [
      { kind: 'call', id: 'w', input: { type: 'put', key: 'x', value: '1' } },
      { kind: 'call', id: 'r1', input: { type: 'get', key: 'x' } },
      { kind: 'return', id: 'r1', output: { type: 'get', value: '1' } },
      { kind: 'call', id: 'r2', input: { type: 'get', key: 'x' } },
      { kind: 'return', id: 'r2', output: { type: 'get', value: '1' } },
    ];
    expect(checkEvents(kvModel, events).result).toBe('ok');
    const stale: HistoryEvent<KvInput, KvOutput>[] = [
      ...events,
      { kind: 'call', id: 'r3', input: { type: 'get', key: 'x' } },
      { kind: 'return', id: 'r3', output: { type: 'get', value: null } },
    ];
    expect(checkEvents(kvModel, stale).result).toBe('illegal');
    expect(() => checkEvents(kvModel, [{ kind: 'return', id: 1, output: { type: 'put' } }])).toThrow(RangeError);
  });

  it('records histories with HistoryRecorder', () => {
    const recorder = new HistoryRecorder<KvInput, KvOutput>();
    const w = recorder.call({ type: 'put', key: 'x', value: '1' }, 'c1');
    w.ok({ type: 'put' });
    const refused = recorder.call({ type: 'put', key: 'x', value: 'never' }, 'c2');
    refused.notApplied();
    const timedOut = recorder.call({ type: 'put', key: 'x', value: '2' }, 'c2');
    timedOut.unknown();
    const r = recorder.call({ type: 'get', key: 'x' }, 'c1');
    r.ok({ type: 'get', value: '2' });
    expect(() => r.ok({ type: 'get', value: '2' })).toThrow(/twice/);
    const ops = recorder.operations();
    expect(ops).toHaveLength(3);
    expect(ops[1]).toMatchObject({ return: Infinity, clientId: 'c2' });
    expect(ops[1]!.output).toBeUndefined();
    expect(checkOperations(kvModel, ops).result).toBe('ok');
  });

  it('refuses malformed histories', () => {
    expect(() => check([put('x', '1', 5, 4)])).toThrow(RangeError);
    expect(() => check([put('x', '1', NaN, 4)])).toThrow(RangeError);
    expect(() => check([{ input: { type: 'get', key: 'x' }, output: { type: 'put' }, call: 0, return: 1 }])).toThrow(TypeError);
  });

  it('gives up with "unknown" when the search exceeds its time limit', () => {
    // 30 concurrent writes: every subset of them with every last writer is a
    // distinct search state, and the impossible read makes the search try them all.
    const writes = Array.from({ length: 30 }, (_, i) => put('x', `w${i}`, 0, 100));
    const started = performance.now();
    const result = checkOperations(kvModel, [...writes, get('x', 'never', 200, 201)], { timeoutMs: 200 });
    expect(result.result).toBe('unknown');
    expect(performance.now() - started).toBeLessThan(2_000);
    if (result.result === 'unknown') expect(result.reason).toContain('timed out after 200 ms');
  });

  it('works with any model: a register with a version counter', () => {
    type State = { value: number; version: number };
    const register: Model<State, { write?: number }, { read?: number }> = {
      init: () => ({ value: 0, version: 0 }),
      step: (s, input, output) =>
        input.write !== undefined
          ? [true, { value: input.write, version: s.version + 1 }]
          : [output === undefined || output.read === s.value, s],
      // Deliberately ignores the version: states that differ only in it explore the same futures.
      equal: (a, b) => a.value === b.value,
    };
    expect(checkOperations(register, [{ input: { write: 1 }, output: {}, call: 0, return: 1 }, { input: {}, output: { read: 1 }, call: 2, return: 3 }]).result).toBe('ok');
    expect(checkOperations(register, [{ input: { write: 1 }, output: {}, call: 0, return: 1 }, { input: {}, output: { read: 0 }, call: 2, return: 3 }]).result).toBe('illegal');
  });
});

// ---------------------------------------------------------------- brute force cross-check

/**
 * Every order of the operations that respects real time (a before b when
 * a.return < b.call), stepping the model; operations with unknown outcome
 * may also be left out. Exponential; for a handful of operations only.
 */
function bruteForce<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): boolean {
  const search = (state: S, remaining: readonly Operation<I, O>[]): boolean => {
    if (remaining.length === 0) return true;
    return remaining.some((op, i) => {
      const rest = remaining.filter((_, j) => j !== i);
      if (op.return === Infinity && search(state, rest)) return true; // never took effect
      if (remaining.some((other) => other.return < op.call)) return false; // something must come first
      const [ok, next] = model.step(state, op.input, op.output);
      return ok && search(next, rest);
    });
  };
  return search(model.init(), ops);
}

const valueArb = fc.constantFrom<string | null>(null, 'a', 'b');
const keyArb = fc.constantFrom('x', 'y');
const txnOpArb: fc.Arbitrary<KvTxnOp> = fc.oneof(
  keyArb.map((key) => ({ type: 'get' as const, key })),
  fc.tuple(keyArb, fc.constantFrom('a', 'b')).map(([key, value]) => ({ type: 'put' as const, key, value })),
  keyArb.map((key) => ({ type: 'delete' as const, key })),
);
type KvStep = { input: KvInput; output: KvOutput };
const kvStepArb: fc.Arbitrary<KvStep> = fc.oneof<fc.Arbitrary<KvStep>[]>(
  fc.tuple(keyArb, valueArb).map(([key, value]): KvStep => ({ input: { type: 'get', key }, output: { type: 'get', value } })),
  fc.tuple(keyArb, fc.constantFrom('a', 'b')).map(([key, value]): KvStep => ({ input: { type: 'put', key, value }, output: { type: 'put' } })),
  fc
    .tuple(keyArb, fc.constantFrom(undefined, true, false))
    .map(([key, existed]): KvStep => ({ input: { type: 'delete', key }, output: existed === undefined ? { type: 'delete' } : { type: 'delete', existed } })),
  fc
    .tuple(keyArb, valueArb, fc.constantFrom('a', 'b'), fc.boolean(), fc.option(valueArb, { nil: undefined }))
    .map(([key, expected, value, ok, current]): KvStep => ({
      input: { type: 'cas', key, expected, value },
      output: ok || current === undefined ? { type: 'cas', ok } : { type: 'cas', ok, current },
    })),
  fc
    .tuple(fc.array(fc.record({ key: keyArb, value: valueArb }), { maxLength: 2 }), fc.array(txnOpArb, { maxLength: 2 }), fc.array(txnOpArb, { maxLength: 2 }), fc.boolean(), fc.array(valueArb, { maxLength: 2 }))
    .map(([compares, success, failure, succeeded, reads]): KvStep => ({
      input: { type: 'txn', compares, success, failure },
      output: { type: 'txn', succeeded, reads },
    })),
);
const kvHistoryArb: fc.Arbitrary<KvOperation[]> = fc.array(
  fc.tuple(kvStepArb, fc.nat(8), fc.nat(4), fc.nat(5)).map(([{ input, output }, call, length, fate]) =>
    fate === 0 ? { input, call, return: Infinity } : { input, output, call, return: call + length },
  ),
  { minLength: 1, maxLength: 7 },
);

const kvModelWithoutHash: Model<KvState, KvInput, KvOutput> = { ...kvModel, hash: undefined };

describe('linearizability checker agrees with brute force', () => {
  it('on random small key-value histories (ties, unknown outcomes, transactions)', () => {
    let illegal = 0;
    fc.assert(
      fc.property(kvHistoryArb, (history) => {
        const expected = bruteForce(kvModel, history) ? 'ok' : 'illegal';
        if (expected === 'illegal') illegal++;
        expect(checkOperations(kvModel, history).result).toBe(expected);
        // Without a hash the cache must tell states apart with equal() alone.
        expect(checkOperations(kvModelWithoutHash, history).result).toBe(expected);
      }),
      { numRuns: 3_000, seed: 20240601 },
    );
    // The property is only worth something if both verdicts occur often.
    expect(illegal).toBeGreaterThan(300);
    expect(illegal).toBeLessThan(2_700);
  });

  it('on longer random histories with more overlap', () => {
    const longer = fc.array(
      fc.tuple(kvStepArb, fc.nat(6), fc.nat(6), fc.nat(6)).map(([{ input, output }, call, length, fate]) =>
        fate === 0 ? { input, call, return: Infinity } : { input, output, call, return: call + length },
      ),
      { minLength: 6, maxLength: 8 },
    );
    fc.assert(
      fc.property(longer, (history) => {
        expect(checkOperations(kvModel, history).result).toBe(bruteForce(kvModel, history) ? 'ok' : 'illegal');
      }),
      { numRuns: 300, seed: 99 },
    );
  });

  it('on random small bank histories', () => {
    const bank = createBankModel({ initialBalances: { a: 10, b: 0 } });
    const bankStep = fc.oneof(
      fc
        .tuple(fc.constantFrom('a', 'b'), fc.constantFrom('a', 'b'), fc.constantFrom(0, 5, 10), fc.constantFrom('ok' as const, 'insufficient' as const))
        .map(([from, to, amount, result]): Pick<BankOperation, 'input' | 'output'> => ({
          input: { type: 'transfer', from, to, amount },
          output: { type: 'transfer', result },
        })),
      fc.constantFrom(0, 5, 10).map((a): Pick<BankOperation, 'input' | 'output'> => ({
        input: { type: 'read' },
        output: { type: 'read', balances: { a, b: 10 - a } },
      })),
    );
    const history = fc.array(
      fc.tuple(bankStep, fc.nat(8), fc.nat(4), fc.nat(5)).map(([{ input, output }, call, length, fate]): BankOperation =>
        fate === 0 ? { input, call, return: Infinity } : { input, output, call, return: call + length },
      ),
      { minLength: 1, maxLength: 7 },
    );
    fc.assert(
      fc.property(history, (ops) => {
        expect(checkOperations(bank, ops).result).toBe(bruteForce(bank, ops) ? 'ok' : 'illegal');
      }),
      { numRuns: 2_000, seed: 5 },
    );
  });

  it('reports a longest prefix that is itself a valid linearization', () => {
    fc.assert(
      fc.property(kvHistoryArb, (history) => {
        const result = checkOperations(kvModel, history);
        if (result.result !== 'illegal') return;
        const { longestPrefix, operations } = result.explanation;
        let state = kvModel.init();
        longestPrefix.forEach((op, i) => {
          const [ok, next] = kvModel.step(state, op.input, op.output);
          expect(ok).toBe(true);
          state = next;
          // Nothing that returned before op was called may come after it.
          const later = operations.filter((o) => !longestPrefix.slice(0, i + 1).includes(o));
          expect(later.every((o) => o.return >= op.call)).toBe(true);
        });
      }),
      { numRuns: 1_000, seed: 7 },
    );
  });
});

// ---------------------------------------------------------------- generated histories

interface GeneratedHistory {
  ops: KvOperation[];
  /** Which write operation (index into ops) wrote each value. */
  writerOf: Map<string, number>;
}

/**
 * A real sequential execution with random overlapping intervals: each client
 * runs one operation at a time; every operation gets a linearization point
 * inside its interval; a reference store applies the operations in the order
 * of those points and fills in the outputs. Always linearizable. Written
 * values are unique, so a value read names its writer.
 */
function generateKvHistory(
  seed: number,
  options: { clients: number; opsPerClient: number; keys: number; unknownRate?: number; txnRate?: number; getsAndPutsOnly?: boolean },
): GeneratedHistory {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const keys = Array.from({ length: options.keys }, (_, i) => `k${i}`);
  const written = new Map<string, string[]>();
  let counter = 0;
  const fresh = (key: string): string => {
    const value = `v${counter++}`;
    written.set(key, [...(written.get(key) ?? []), value]);
    return value;
  };

  const drafts: Array<{ input: KvInput; call: number; point: number; ret: number; fate: 'ok' | 'applied' | 'lost' }> = [];
  for (let c = 0; c < options.clients; c++) {
    let t = random() * 2;
    for (let i = 0; i < options.opsPerClient; i++) {
      const key = pick(keys);
      const r = random();
      let input: KvInput;
      if (r < (options.txnRate ?? 0)) {
        const other = pick(keys);
        input = {
          type: 'txn',
          compares: [{ key, value: pick([null, ...(written.get(key) ?? [])]) }],
          success: [{ type: 'put', key: other, value: fresh(other) }, { type: 'get', key }],
          failure: [{ type: 'get', key: other }],
        };
      } else if (r < 0.45) input = { type: 'get', key };
      else if (r < 0.75 || options.getsAndPutsOnly) input = { type: 'put', key, value: fresh(key) };
      else if (r < 0.8) input = { type: 'delete', key };
      else input = { type: 'cas', key, expected: pick([null, ...(written.get(key) ?? []).slice(-3)]), value: fresh(key) };
      const call = t + random();
      const point = call + random() * 3;
      const ret = point + random() * 3;
      const u = random();
      const fate = u < (options.unknownRate ?? 0) / 2 ? 'lost' : u < (options.unknownRate ?? 0) ? 'applied' : 'ok';
      drafts.push({ input, call, point, ret, fate });
      t = ret;
    }
  }

  let state: KvState = new Map();
  const ops: KvOperation[] = new Array(drafts.length);
  const writerOf = new Map<string, number>();
  const order = drafts.map((_, i) => i).sort((a, b) => drafts[a]!.point - drafts[b]!.point);
  for (const i of order) {
    const d = drafts[i]!;
    const { input } = d;
    if (input.type === 'put' || input.type === 'cas') writerOf.set(input.value, i);
    if (d.fate === 'lost') {
      ops[i] = { input, call: d.call, return: Infinity };
      continue;
    }
    const output = referenceOutput(state, input);
    state = output.state;
    ops[i] = d.fate === 'applied' ? { input, call: d.call, return: Infinity } : { input, output: output.output, call: d.call, return: d.ret };
  }
  return { ops, writerOf };
}

/** An independent sequential key-value store (not the model under test) that computes outputs. */
function referenceOutput(state: KvState, input: KvInput): { state: KvState; output: KvOutput } {
  const next = new Map(state);
  switch (input.type) {
    case 'get':
      return { state, output: { type: 'get', value: state.get(input.key) ?? null } };
    case 'put':
      next.set(input.key, input.value);
      return { state: next, output: { type: 'put' } };
    case 'delete':
      next.delete(input.key);
      return { state: next, output: { type: 'delete', existed: state.has(input.key) } };
    case 'cas': {
      const current = state.get(input.key) ?? null;
      if (current !== input.expected) return { state, output: { type: 'cas', ok: false, current } };
      next.set(input.key, input.value);
      return { state: next, output: { type: 'cas', ok: true } };
    }
    case 'txn': {
      const succeeded = input.compares.every((c) => (state.get(c.key) ?? null) === c.value);
      const reads: Array<string | null> = [];
      for (const op of succeeded ? input.success : (input.failure ?? [])) {
        if (op.type === 'get') reads.push(next.get(op.key) ?? null);
        else if (op.type === 'put') next.set(op.key, op.value);
        else next.delete(op.key);
      }
      return { state: next, output: { type: 'txn', succeeded, reads } };
    }
  }
}

const completedGets = (ops: KvOperation[]): number[] =>
  ops.flatMap((op, i) => (op.input.type === 'get' && op.output !== undefined ? [i] : []));

const withRead = (ops: KvOperation[], index: number, value: string | null): KvOperation[] =>
  ops.map((op, i) => (i === index ? { ...op, output: { type: 'get', value } } : op));

describe('linearizability checker on generated histories', () => {
  it('accepts every history produced by a real sequential execution', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const { ops } = generateKvHistory(seed, { clients: 5, opsPerClient: 30, keys: 3, unknownRate: 0.1, txnRate: seed % 2 ? 0.15 : 0 });
      const result = check(ops);
      expect(result.result, `seed=${seed}`).toBe('ok');
    }
  });

  it('rejects a history where one read returns a value never written', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const { ops } = generateKvHistory(seed, { clients: 5, opsPerClient: 30, keys: 3, unknownRate: 0.1 });
      const gets = completedGets(ops);
      const target = gets[seed % gets.length]!;
      const result = check(withRead(ops, target, 'never-written'));
      expect(result.result, `seed=${seed}`).toBe('illegal');
      if (result.result === 'illegal') expect(result.explanation.partition).toBe(`key ${JSON.stringify((ops[target]!.input as { key: string }).key)}`);
    }
  });

  it('rejects a read of a value whose write started after the read returned', () => {
    let checked = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const { ops } = generateKvHistory(seed, { clients: 5, opsPerClient: 30, keys: 3, unknownRate: 0.1 });
      for (const target of completedGets(ops)) {
        const read = ops[target]!;
        const future = ops.find((op) => op.input.type === 'put' && op.input.key === (read.input as { key: string }).key && op.call > read.return);
        if (!future || future.input.type !== 'put') continue;
        expect(check(withRead(ops, target, future.input.value)).result, `seed=${seed} read=${target}`).toBe('illegal');
        checked++;
        break;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('rejects a provably stale read (its value was overwritten by a put that finished before the read began)', () => {
    let checked = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const { ops } = generateKvHistory(seed, { clients: 5, opsPerClient: 30, keys: 3, unknownRate: 0.1 });
      const done = (op: KvOperation): boolean => op.return !== Infinity;
      search: for (const target of completedGets(ops)) {
        const read = ops[target]!;
        const key = (read.input as { key: string }).key;
        for (const overwrite of ops) {
          if (overwrite.input.type !== 'put' || overwrite.input.key !== key || !done(overwrite) || overwrite.return >= read.call) continue;
          const old = ops.find((op) => op.input.type === 'put' && op.input.key === key && done(op) && op.return < overwrite.call);
          if (!old || old.input.type !== 'put') continue;
          expect(check(withRead(ops, target, old.input.value)).result, `seed=${seed} read=${target}`).toBe('illegal');
          checked++;
          break search;
        }
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('catches most reads corrupted to another value written to the same key', () => {
    let caught = 0;
    let tried = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const { ops, writerOf } = generateKvHistory(seed, { clients: 5, opsPerClient: 30, keys: 3 });
      const random = mulberry32(seed * 7919);
      const gets = completedGets(ops);
      const target = gets[Math.floor(random() * gets.length)]!;
      const key = (ops[target]!.input as { key: string }).key;
      const original = (ops[target]!.output as { value: string | null }).value;
      const others = [...writerOf.keys()].filter((v) => v !== original && ops[writerOf.get(v)!]!.input.type === 'put' && (ops[writerOf.get(v)!]!.input as { key: string }).key === key);
      if (others.length === 0) continue;
      tried++;
      if (check(withRead(ops, target, others[Math.floor(random() * others.length)]!)).result === 'illegal') caught++;
    }
    // Not every such corruption is illegal (the value may have been current
    // somewhere in the read's interval); with 30 writes a key, most are.
    expect(tried).toBeGreaterThan(30);
    expect(caught / tried).toBeGreaterThan(0.7);
  });

  it('checks 10,000 operations over 100 keys with 10 concurrent clients in a few seconds', () => {
    const { ops } = generateKvHistory(42, { clients: 10, opsPerClient: 1_000, keys: 100, unknownRate: 0.02 });
    expect(ops).toHaveLength(10_000);
    const result = check(ops);
    expect(result.result).toBe('ok');
    expect(result.partitions).toBe(100);
    expect(result.elapsedMs).toBeLessThan(3_000);

    const broken = check(withRead(ops, completedGets(ops).at(-1)!, 'never-written'));
    expect(broken.result).toBe('illegal');
    expect(broken.elapsedMs).toBeLessThan(3_000);
  });

  it('checks 2,000 operations over 100 keys joined by transactions with 20 concurrent clients in a few seconds', () => {
    const { ops } = generateKvHistory(44, { clients: 20, opsPerClient: 100, keys: 100, unknownRate: 0.01, txnRate: 0.05 });
    const result = check(ops);
    expect(result.result).toBe('ok');
    // The transactions tie most keys into one partition.
    expect(result.partitions).toBeLessThan(20);
    expect(result.elapsedMs).toBeLessThan(3_000);
  });

  it('checks 2,000 gets and puts on one key with 20% unknown outcomes in a few seconds', () => {
    const { ops } = generateKvHistory(45, { clients: 10, opsPerClient: 200, keys: 1, unknownRate: 0.2, getsAndPutsOnly: true });
    const result = check(ops);
    expect(result.result).toBe('ok');
    expect(result.elapsedMs).toBeLessThan(3_000);
  });

  it('checks 2,000 operations on one key with 10 concurrent clients in a few seconds', () => {
    const { ops } = generateKvHistory(43, { clients: 10, opsPerClient: 200, keys: 1, unknownRate: 0.02 });
    const result = check(ops);
    expect(result.result).toBe('ok');
    expect(result.elapsedMs).toBeLessThan(3_000);
  });
});

// ---------------------------------------------------------------- bank

describe('bank check', () => {
  const initialBalances = { alice: 100, bob: 50, carol: 0 };
  const bank = createBankModel({ initialBalances });
  const transfer = (from: string, to: string, amount: number, result: 'ok' | 'insufficient', call: number, ret: number): BankOperation => ({
    input: { type: 'transfer', from, to, amount },
    output: { type: 'transfer', result },
    call,
    return: ret,
  });
  const read = (balances: Record<string, number>, call: number, ret: number): BankOperation => ({
    input: { type: 'read' },
    output: { type: 'read', balances },
    call,
    return: ret,
  });

  it('invariants: same total everywhere, no negative balance, same accounts', () => {
    const good = [read({ alice: 100, bob: 50, carol: 0 }, 0, 1), read({ alice: 70, bob: 50, carol: 30 }, 2, 3)];
    expect(checkBankInvariants(good, { initialBalances })).toMatchObject({ ok: true, total: 150, readsChecked: 2 });
    expect(checkBankInvariants(good)).toMatchObject({ ok: true, total: 150 });

    const torn = checkBankInvariants([...good, read({ alice: 70, bob: 50, carol: 0 }, 4, 5)], { initialBalances });
    expect(torn.ok).toBe(false);
    expect(torn.violations.map((v) => v.problem)).toEqual(['read saw a total of 120, expected 150']);

    const negative = checkBankInvariants([read({ alice: 160, bob: -10, carol: 0 }, 0, 1)], { initialBalances });
    expect(negative.violations.map((v) => v.problem)).toEqual(['read saw balance -10 for bob']);

    const missing = checkBankInvariants([read({ alice: 150, bob: 0 }, 0, 1)], { initialBalances });
    expect(missing.violations.map((v) => v.problem)).toEqual(['read saw accounts [alice,bob], expected [alice,bob,carol]']);
  });

  it('model: transfers and reads that can be ordered are accepted', () => {
    const history = [
      transfer('alice', 'carol', 30, 'ok', 0, 10),
      read({ alice: 100, bob: 50, carol: 0 }, 1, 2), // before the transfer
      read({ alice: 70, bob: 50, carol: 30 }, 3, 4), // after it
      transfer('carol', 'bob', 40, 'insufficient', 11, 12),
      transfer('bob', 'carol', 60, 'insufficient', 13, 14),
    ];
    expect(checkOperations(bank, history).result).toBe('ok');
  });

  it('model: rejects a refusal with enough money, and reads that go back in time', () => {
    expect(checkOperations(bank, [transfer('alice', 'bob', 100, 'insufficient', 0, 1)]).result).toBe('illegal');
    const backwards = [
      transfer('alice', 'carol', 30, 'ok', 0, 10),
      read({ alice: 70, bob: 50, carol: 30 }, 1, 2),
      read({ alice: 100, bob: 50, carol: 0 }, 3, 4),
    ];
    expect(checkBankInvariants(backwards, { initialBalances }).ok).toBe(true);
    expect(checkOperations(bank, backwards).result).toBe('illegal');
  });

  it('model: a transfer with unknown outcome may or may not have happened', () => {
    const lost: BankOperation = { input: { type: 'transfer', from: 'alice', to: 'bob', amount: 10 }, call: 0, return: Infinity };
    expect(checkOperations(bank, [lost, read({ alice: 90, bob: 60, carol: 0 }, 5, 6)]).result).toBe('ok');
    expect(checkOperations(bank, [lost, read({ alice: 100, bob: 50, carol: 0 }, 5, 6)]).result).toBe('ok');
    expect(checkOperations(bank, [lost, read({ alice: 80, bob: 70, carol: 0 }, 5, 6)]).result).toBe('illegal');
  });

  it('model: generated histories are accepted; an unreachable read is rejected though its total is right', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = mulberry32(seed);
      const accounts = Object.keys(initialBalances);
      const drafts: Array<{ op: BankOperation; point: number; fate: number }> = [];
      for (let c = 0; c < 4; c++) {
        let t = 0;
        for (let i = 0; i < 25; i++) {
          const call = t + random();
          const point = call + random() * 3;
          const ret = point + random() * 3;
          const input: BankOperation['input'] =
            random() < 0.4
              ? { type: 'read' }
              : { type: 'transfer', from: accounts[Math.floor(random() * 3)]!, to: accounts[Math.floor(random() * 3)]!, amount: 10 * Math.floor(random() * 6) };
          drafts.push({ op: { input, call, return: ret }, point, fate: random() });
          t = ret;
        }
      }
      let balances: Record<string, number> = { ...initialBalances };
      for (const d of [...drafts].sort((a, b) => a.point - b.point)) {
        const input = d.op.input;
        if (d.fate < 0.03) {
          d.op.return = Infinity; // lost before it took effect
          continue;
        }
        if (input.type === 'read') d.op.output = { type: 'read', balances: { ...balances } };
        else {
          const ok = balances[input.from]! >= input.amount;
          if (ok && input.from !== input.to) balances = { ...balances, [input.from]: balances[input.from]! - input.amount, [input.to]: balances[input.to]! + input.amount };
          d.op.output = { type: 'transfer', result: ok ? 'ok' : 'insufficient' };
        }
        if (d.fate < 0.06) {
          d.op.return = Infinity; // took effect, answer lost
          delete d.op.output;
        }
      }
      const history = drafts.map((d) => d.op);
      expect(checkBankInvariants(history, { initialBalances }).ok, `seed=${seed}`).toBe(true);
      expect(checkOperations(bank, history, { timeoutMs: 10_000 }).result, `seed=${seed}`).toBe('ok');

      // Every amount is a multiple of 10, so a balance of 101 is unreachable.
      const target = history.findIndex((op) => op.output?.type === 'read');
      const out = history[target]!.output as { type: 'read'; balances: Record<string, number> };
      const [a, b] = Object.keys(out.balances).filter((name) => out.balances[name]! > 0);
      const skewed = { ...out.balances, [a!]: out.balances[a!]! + 1, ...(b ? { [b]: out.balances[b]! - 1 } : {}) };
      const corrupted = history.map((op, i) => (i === target ? { ...op, output: { type: 'read' as const, balances: skewed } } : op));
      if (b) expect(checkBankInvariants(corrupted, { initialBalances }).ok).toBe(true);
      expect(checkOperations(bank, corrupted, { timeoutMs: 10_000 }).result, `seed=${seed}`).toBe('illegal');
    }
  });
});
