// The sequential specification of the replicated key-value store (the
// managers' etcd-like API), for the linearizability checker.
//
// Single-key operations on different keys commute, so the history splits
// into one sub-history per key; a multi-key transaction ties its keys
// together (union-find), so the keys it touches are checked as one.
//
// Values are strings; null means "absent" everywhere (a read of a missing
// key, a CAS that expects the key to be missing, a compare against absence).

import type { Model, Operation } from './linearizability.js';

/** Part of a transaction: compare the current value of `key` with `value` (null = absent). */
export interface KvCompare {
  key: string;
  value: string | null;
  /** Default 'equal'. */
  op?: 'equal' | 'notEqual';
}

/** Part of a transaction's branch. Branch operations run in order; a get sees earlier puts of the same branch. */
export type KvTxnOp =
  | { type: 'get'; key: string }
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string };

export type KvInput =
  | { type: 'get'; key: string }
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string }
  /** Compare-and-swap: set `value` if the current value is `expected` (null = key absent). */
  | { type: 'cas'; key: string; expected: string | null; value: string }
  /** All compares hold → run `success`, otherwise run `failure` (default: nothing). Atomic. */
  | { type: 'txn'; compares: KvCompare[]; success: KvTxnOp[]; failure?: KvTxnOp[] };

export type KvOutput =
  | { type: 'get'; value: string | null }
  | { type: 'put' }
  /** `existed`, when the server reports it, is checked. */
  | { type: 'delete'; existed?: boolean }
  /** `current`, when the server reports it on failure (409), is checked. */
  | { type: 'cas'; ok: boolean; current?: string | null }
  /** `reads`, when given, are the values of the executed branch's gets, in order. */
  | { type: 'txn'; succeeded: boolean; reads?: Array<string | null> };

/** Key → value of the keys that exist. Never mutated: every change makes a new map. */
export type KvState = ReadonlyMap<string, string>;

export type KvOperation = Operation<KvInput, KvOutput>;

export interface KvModelOptions {
  /** Keys that exist before the history starts. */
  initial?: Record<string, string>;
}

export function createKvModel(options: KvModelOptions = {}): Model<KvState, KvInput, KvOutput> {
  const initial: KvState = new Map(Object.entries(options.initial ?? {}));
  return {
    init: () => initial,
    step: stepKv,
    equal: equalKv,
    isReadOnly: isReadOnlyKv,
    footprint: keysOf,
    dropUnobserved: dropUnobservedKv,
    hash: hashKv,
    partition: partitionKv,
    describeOperation: describeKvOperation,
    describeState: describeKvState,
    describePartition: (ops) => describeKeys(ops.flatMap((op) => keysOf(op.input))),
  };
}

/** The model with every key initially absent. */
export const kvModel = createKvModel();

function stepKv(state: KvState, input: KvInput, output: KvOutput | undefined): [boolean, KvState] {
  switch (input.type) {
    case 'get': {
      const out = outputOf(output, 'get');
      return [out === undefined || out.value === (state.get(input.key) ?? null), state];
    }
    case 'put':
      outputOf(output, 'put');
      return [true, withValue(state, input.key, input.value)];
    case 'delete': {
      const existed = outputOf(output, 'delete')?.existed;
      if (existed !== undefined && existed !== state.has(input.key)) return [false, state];
      return [true, withoutKey(state, input.key)];
    }
    case 'cas': {
      const out = outputOf(output, 'cas');
      const current = state.get(input.key) ?? null;
      const swapped = current === input.expected;
      const next = swapped ? withValue(state, input.key, input.value) : state;
      if (out === undefined) return [true, next];
      if (out.ok !== swapped) return [false, state];
      if (!swapped && out.current !== undefined && out.current !== current) return [false, state];
      return [true, next];
    }
    case 'txn': {
      const out = outputOf(output, 'txn');
      const succeeded = input.compares.every((c) => compareHolds(state, c));
      const reads: Array<string | null> = [];
      let next = state;
      for (const op of succeeded ? input.success : (input.failure ?? [])) {
        if (op.type === 'get') reads.push(next.get(op.key) ?? null);
        else if (op.type === 'put') next = withValue(next, op.key, op.value);
        else next = withoutKey(next, op.key);
      }
      if (out === undefined) return [true, next];
      if (out.succeeded !== succeeded) return [false, state];
      if (out.reads !== undefined && !sameReads(out.reads, reads)) return [false, state];
      return [true, next];
    }
  }
}

/** The output as the type the input calls for; undefined when the outcome is unknown. */
function outputOf<T extends KvOutput['type']>(output: KvOutput | undefined, type: T): Extract<KvOutput, { type: T }> | undefined {
  if (output === undefined) return undefined;
  if (output.type !== type) throw new TypeError(`kv history: a ${type} operation has a ${output.type} output`);
  return output as Extract<KvOutput, { type: T }>;
}

function compareHolds(state: KvState, compare: KvCompare): boolean {
  const equal = (state.get(compare.key) ?? null) === compare.value;
  return (compare.op ?? 'equal') === 'equal' ? equal : !equal;
}

function sameReads(a: ReadonlyArray<string | null>, b: ReadonlyArray<string | null>): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function withValue(state: KvState, key: string, value: string): KvState {
  const old = state.get(key);
  if (old === value) return state;
  const next = new Map(state).set(key, value);
  stateHashes.set(next, (stateHash(state) ^ (old === undefined ? 0 : entryHash(key, old)) ^ entryHash(key, value)) >>> 0);
  return next;
}

function withoutKey(state: KvState, key: string): KvState {
  const old = state.get(key);
  if (old === undefined) return state;
  const next = new Map(state);
  next.delete(key);
  stateHashes.set(next, (stateHash(state) ^ entryHash(key, old)) >>> 0);
  return next;
}

// The hash is the xor of one word per entry, so a change updates it in
// O(1); states remember theirs. It need not be injective (the checker
// confirms with equalKv), only cheap: partitions joined by transactions
// hold many keys, and the search hashes every state it reaches.
const stateHashes = new WeakMap<KvState, number>();

function entryHash(key: string, value: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ 0xff, 0x01000193);
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}

function stateHash(state: KvState): number {
  let h = stateHashes.get(state);
  if (h === undefined) {
    h = 0;
    for (const [key, value] of state) h ^= entryHash(key, value);
    stateHashes.set(state, h);
  }
  return h;
}

function hashKv(state: KvState): string {
  return String(stateHash(state));
}

function equalKv(a: KvState, b: KvState): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (b.get(key) !== value) return false;
  return true;
}

/** Every key an operation reads or writes. */
export function keysOf(input: KvInput): string[] {
  if (input.type !== 'txn') return [input.key];
  return [...input.compares.map((c) => c.key), ...input.success.map((o) => o.key), ...(input.failure ?? []).map((o) => o.key)];
}

/** Never changes the state whatever the outcome. */
function isReadOnlyInput(input: KvInput): boolean {
  if (input.type === 'get') return true;
  if (input.type !== 'txn') return false;
  return [...input.success, ...(input.failure ?? [])].every((o) => o.type === 'get');
}

/** Never changes the state in any state where this output is possible. */
function isReadOnlyKv(input: KvInput, output: KvOutput | undefined): boolean {
  if (isReadOnlyInput(input)) return true;
  if (output === undefined) return false;
  if (output.type === 'cas') return !output.ok;
  if (output.type === 'delete') return output.existed === false;
  if (output.type === 'txn' && input.type === 'txn') {
    const branch = output.succeeded ? input.success : (input.failure ?? []);
    return branch.every((o) => o.type === 'get');
  }
  return false;
}

/**
 * One sub-history per group of keys that transactions connect. Read-only
 * operations whose outcome is unknown are dropped: they change nothing and
 * any output would do, so they can never make a history illegal, but each
 * one would stay a candidate to the end of the search.
 */
function partitionKv(history: readonly KvOperation[]): KvOperation[][] {
  history.forEach(validateKvOperation);
  const parent = new Map<string, string>();
  const find = (key: string): string => {
    let root = key;
    while (parent.get(root) !== root) root = parent.get(root) ?? root;
    // Path compression keeps later finds short.
    for (let k = key; k !== root; ) {
      const up = parent.get(k)!;
      parent.set(k, root);
      k = up;
    }
    return root;
  };
  const kept = history.filter((op) => !(op.output === undefined && isReadOnlyInput(op.input)));
  for (const op of kept) {
    const keys = keysOf(op.input);
    for (const key of keys) if (!parent.has(key)) parent.set(key, key);
    for (const key of keys.slice(1)) {
      const a = find(keys[0]!);
      const b = find(key);
      if (a !== b) parent.set(b, a);
    }
  }
  const groups = new Map<string, KvOperation[]>();
  const keyless: KvOperation[] = [];
  for (const op of kept) {
    const first = keysOf(op.input)[0];
    if (first === undefined) {
      keyless.push(op);
      continue;
    }
    const root = find(first);
    let group = groups.get(root);
    if (!group) groups.set(root, (group = []));
    group.push(op);
  }
  const partitions = [...groups.values()];
  if (keyless.length > 0) partitions.push(keyless);
  return partitions;
}

/**
 * Drops the unknown-outcome writes that nobody can have observed: none of
 * their values was read or compared against, and no operation on their keys
 * reported something about the key without naming a value (a delete that
 * found the key, a failed CAS that does not say what it found, a
 * transaction comparing the key). Only a guess all the same: the checker
 * falls back on the full history when it fails.
 */
function dropUnobservedKv(history: readonly KvOperation[]): KvOperation[] {
  const observedValues = new Set<string | null>();
  const observedKeys = new Set<string>();
  for (const { input, output } of history) {
    if (input.type === 'cas') observedValues.add(input.expected);
    if (input.type === 'txn') {
      for (const c of input.compares) {
        observedValues.add(c.value);
        observedKeys.add(c.key);
      }
    }
    if (output?.type === 'get') observedValues.add(output.value);
    if (input.type === 'cas' && output?.type === 'cas' && !output.ok) {
      if (output.current === undefined) observedKeys.add(input.key);
      else observedValues.add(output.current);
    }
    if (input.type === 'delete' && output?.type === 'delete' && output.existed === true) observedKeys.add(input.key);
    if (output?.type === 'txn') for (const v of output.reads ?? []) observedValues.add(v);
  }
  return history.filter(
    (op) =>
      op.output !== undefined ||
      writtenValues(op.input).some((v) => observedValues.has(v)) ||
      keysOf(op.input).some((k) => observedKeys.has(k)),
  );
}

function writtenValues(input: KvInput): string[] {
  if (input.type === 'put' || input.type === 'cas') return [input.value];
  if (input.type !== 'txn') return [];
  return [...input.success, ...(input.failure ?? [])].flatMap((o) => (o.type === 'put' ? [o.value] : []));
}

function validateKvOperation(op: KvOperation, index: number): void {
  const input = op.input as KvInput | undefined;
  const where = `kv history operation ${index}`;
  if (!input || typeof input !== 'object') throw new TypeError(`${where}: input is missing`);
  const isValue = (v: unknown): boolean => typeof v === 'string';
  const isValueOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
  switch (input.type) {
    case 'get':
    case 'delete':
      if (!isValue(input.key)) throw new TypeError(`${where}: ${input.type} needs a string key`);
      break;
    case 'put':
      if (!isValue(input.key) || !isValue(input.value)) throw new TypeError(`${where}: put needs a string key and value`);
      break;
    case 'cas':
      if (!isValue(input.key) || !isValue(input.value) || !isValueOrNull(input.expected)) {
        throw new TypeError(`${where}: cas needs a string key and value and expected string | null`);
      }
      break;
    case 'txn':
      if (!Array.isArray(input.compares) || !Array.isArray(input.success)) {
        throw new TypeError(`${where}: txn needs compares and success arrays`);
      }
      break;
    default:
      throw new TypeError(`${where}: unknown operation type ${JSON.stringify((input as { type?: unknown }).type)}`);
  }
  if (op.output !== undefined && op.output.type !== input.type) {
    throw new TypeError(`${where}: a ${input.type} operation has a ${String(op.output.type)} output`);
  }
}

function show(value: string | null): string {
  return value === null ? 'absent' : JSON.stringify(value);
}

export function describeKvState(state: KvState): string {
  const keys = [...state.keys()].sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${JSON.stringify(state.get(k))}`).join(', ')}}`;
}

function describeTxnOp(op: KvTxnOp): string {
  if (op.type === 'get') return `get(${op.key})`;
  if (op.type === 'put') return `put(${op.key}, ${show(op.value)})`;
  return `delete(${op.key})`;
}

export function describeKvOperation(input: KvInput, output: KvOutput | undefined): string {
  switch (input.type) {
    case 'get': {
      const out = outputOf(output, 'get');
      return `get(${input.key}) -> ${out ? show(out.value) : '?'}`;
    }
    case 'put':
      return `put(${input.key}, ${show(input.value)}) -> ${outputOf(output, 'put') ? 'ok' : '?'}`;
    case 'delete': {
      const out = outputOf(output, 'delete');
      const result = !out ? '?' : out.existed === undefined ? 'ok' : out.existed ? 'existed' : 'was absent';
      return `delete(${input.key}) -> ${result}`;
    }
    case 'cas': {
      const out = outputOf(output, 'cas');
      const result = !out ? '?' : out.ok ? 'ok' : out.current === undefined ? 'failed' : `failed (current ${show(out.current)})`;
      return `cas(${input.key}, ${show(input.expected)} -> ${show(input.value)}) -> ${result}`;
    }
    case 'txn': {
      const out = outputOf(output, 'txn');
      const compares = input.compares.map((c) => `${c.key} ${(c.op ?? 'equal') === 'equal' ? '==' : '!='} ${show(c.value)}`).join(' && ');
      const branch = (ops: KvTxnOp[] | undefined): string => (ops && ops.length > 0 ? ops.map(describeTxnOp).join(', ') : 'nothing');
      const result = !out ? '?' : `${out.succeeded ? 'succeeded' : 'failed'}${out.reads ? ` reads [${out.reads.map(show).join(', ')}]` : ''}`;
      return `txn(if ${compares || 'true'} then ${branch(input.success)} else ${branch(input.failure)}) -> ${result}`;
    }
  }
}

function describeKeys(keys: string[]): string {
  const unique = [...new Set(keys)].sort();
  if (unique.length === 0) return 'operations that touch no key';
  if (unique.length === 1) return `key ${JSON.stringify(unique[0])}`;
  const shown = unique.slice(0, 5).map((k) => JSON.stringify(k)).join(', ');
  return `keys ${shown}${unique.length > 5 ? ` and ${unique.length - 5} more` : ''}`;
}
