// A linearizability checker: the Wing & Gong search with Lowe's memoisation,
// the algorithm Porcupine (github.com/anishathalye/porcupine) uses.
//
// A history is a list of operations, each with the time its call was issued
// and the time its response arrived. The checker looks for a total order of
// the operations that (1) respects real time (if A returned before B was
// called, A comes first) and (2) is a legal sequential execution of the
// model. It does a depth-first search over the call/return events, kept in
// a doubly linked list so that an operation can be "lifted" out of the list
// when it is linearized and put back when the search backtracks, and it
// prunes every (set of linearized operations, model state) pair it has
// already explored: from the same pair the rest of the search is the same.
// A model may split the history into independent sub-histories (per key),
// each searched on its own.
//
// An operation whose outcome is unknown (the client timed out, the process
// died) has return time +Infinity and output undefined: it may take effect
// at any point after its call, or never ("never" is the same as "after every
// other operation", which an infinite return time allows).
//
// Beyond Porcupine, three prunings keep crash histories and read-heavy or
// transaction-joined histories cheap; each is argued where it is made:
// - the search ends once every known-outcome operation is linearized, and a
//   memoised pair also covers pairs that differ only by having linearized
//   more unknown-outcome operations (they can always be left out);
// - an operation that never changes the state (model.isReadOnly), or that no
//   concurrent operation shares a part of the state with (model.footprint),
//   is committed to: if the search fails after it, its level fails;
// - the linearized set is memoised compactly (a few words, not n bits).
//
// Pure: no I/O. Time only for the optional timeout.

/** One operation of a history. `call` and `return` share one clock (any unit; only their order matters). */
export interface Operation<I, O> {
  input: I;
  /** The response; undefined when the outcome is unknown (then `return` should be Infinity). */
  output?: O | undefined;
  /** When the call was issued. */
  call: number;
  /** When the response arrived; Infinity when it never did (outcome unknown). */
  return: number;
  /** Who issued it (only for explanations). */
  clientId?: string | number;
}

/** A sequential specification of the object under test. States must be treated as immutable. */
export interface Model<S, I, O> {
  init(): S;
  /**
   * Applies `input` to `state`. Returns [false, state] when `output` is not what
   * a sequential execution would produce here. `output` is undefined for an
   * operation whose outcome is unknown: accept it and apply its effect if any.
   */
  step(state: S, input: I, output: O | undefined): [ok: boolean, next: S];
  equal(a: S, b: S): boolean;
  /**
   * Optional: true when this operation, with this output, leaves the state
   * unchanged in every state where step accepts it (a read, a CAS that
   * reports failure). The search then commits to it without trying the
   * alternatives: a large saving on read-heavy histories. A wrong `true`
   * makes the checker report false violations.
   */
  isReadOnly?(input: I, output: O | undefined): boolean;
  /**
   * Optional: the parts of the state (e.g. keys) the operation reads or
   * writes. Operations with disjoint footprints must commute and not see
   * each other's effects. An operation that no concurrent operation shares a
   * part with is then committed to like a read. Useful when a partition
   * holds many parts (keys joined by a few transactions).
   */
  footprint?(input: I): readonly string[];
  /**
   * Optional: the history without the unknown-outcome operations that,
   * judging by the other operations' inputs and outputs, nobody observed
   * (a lost write whose value no read returned). The checker first searches
   * this smaller history, where those operations no longer get in the way,
   * and searches the full one only when that fails: a wrong guess costs
   * time, never a wrong verdict.
   */
  dropUnobserved?(history: readonly Operation<I, O>[]): Operation<I, O>[];
  /** Optional: equal states must give equal strings. Speeds up the cache. */
  hash?(state: S): string;
  /** Optional: split a history into independent sub-histories checked one by one. */
  partition?(history: readonly Operation<I, O>[]): Operation<I, O>[][];
  describeOperation?(input: I, output: O | undefined): string;
  describeState?(state: S): string;
  /** Names a sub-history in explanations, e.g. "key x". */
  describePartition?(history: readonly Operation<I, O>[]): string;
}

export interface CheckOptions {
  /** Give up after this long and answer 'unknown' (default: no limit). */
  timeoutMs?: number;
  /** Clock for the timeout, in ms (default: performance.now). */
  now?: () => number;
}

export interface CheckStats {
  /** Number of independent sub-histories after partitioning. */
  partitions: number;
  /** Operations in the history as given. */
  operations: number;
  elapsedMs: number;
}

export interface CandidateOperation<I, O> {
  operation: Operation<I, O>;
  /** True when the model refuses the operation right after the prefix (its output cannot be explained there). */
  rejectedAfterPrefix: boolean;
}

export interface IllegalExplanation<I, O> {
  /** Index of the sub-history (after partitioning) that has no linearization. */
  partitionIndex: number;
  /** Its name from model.describePartition, e.g. "key x". */
  partition: string;
  /** The operations of that sub-history. */
  operations: Operation<I, O>[];
  /** A longest linearizable prefix the search found, in linearization order. */
  longestPrefix: Operation<I, O>[];
  /** model.describeState of the state after that prefix (when the model can describe states). */
  stateAfterPrefix?: string;
  /**
   * The operations that could have come next after the prefix (called no
   * later than the earliest pending return). None of them leads to a full
   * linearization.
   */
  candidates: CandidateOperation<I, O>[];
  /** The explanation as text, one fact per line. */
  text: string;
}

export type CheckResult<I, O> =
  | (CheckStats & { result: 'ok' })
  | (CheckStats & { result: 'unknown'; reason: string })
  | (CheckStats & { result: 'illegal'; explanation: IllegalExplanation<I, O> });

/** Call/return events in the order they happened (time = position). */
export type HistoryEvent<I, O> =
  | { kind: 'call'; id: string | number; input: I; clientId?: string | number }
  | { kind: 'return'; id: string | number; output: O | undefined };

/**
 * Checks a history given as operations. Throws RangeError on a malformed
 * history (call time not finite, return before call).
 */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  const now = options.now ?? (() => performance.now());
  const started = now();
  const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
  history.forEach(validateOperation);

  const partitions = model.partition ? model.partition(history) : [history.slice()];
  const stats = (): CheckStats => ({
    partitions: partitions.length,
    operations: history.length,
    elapsedMs: now() - started,
  });

  for (let p = 0; p < partitions.length; p++) {
    const ops = partitions[p]!;
    // Leaving out unknown-outcome operations only removes possibilities:
    // a linearization of the rest is one of the whole (they never took effect).
    // A budget of steps, because proving that a history has no
    // linearization can take far longer than finding one.
    const reduced = model.dropUnobserved?.(ops);
    let reducedFailed = false;
    if (reduced && reduced.length < ops.length) {
      const first = searchLinearization(model, reduced, deadline, now, 500 * reduced.length + 100_000);
      if (first.kind === 'ok') continue;
      reducedFailed = first.kind === 'illegal';
    }
    const outcome = searchLinearization(model, ops, deadline, now, Infinity);
    if (outcome.kind === 'timeout') {
      const hint = reducedFailed
        ? `; it is not linearizable if the ${ops.length - reduced!.length} unknown-outcome operations nobody observed never took effect`
        : '';
      return {
        ...stats(),
        result: 'unknown',
        reason: `timed out after ${options.timeoutMs} ms while checking ${describePartition(model, ops, p)} (${ops.length} operations, partition ${p + 1} of ${partitions.length})${hint}`,
      };
    }
    if (outcome.kind === 'illegal') {
      return { ...stats(), result: 'illegal', explanation: explain(model, ops, p, outcome) };
    }
  }
  return { ...stats(), result: 'ok' };
}

/**
 * Checks a history given as call/return events in real-time order. A call
 * without a return has an unknown outcome. Throws RangeError on a return
 * without its call or a reused id.
 */
export function checkEvents<S, I, O>(
  model: Model<S, I, O>,
  events: readonly HistoryEvent<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  return checkOperations(model, eventsToOperations(events), options);
}

export function eventsToOperations<I, O>(events: readonly HistoryEvent<I, O>[]): Operation<I, O>[] {
  const ops: Operation<I, O>[] = [];
  const open = new Map<string | number, Operation<I, O>>();
  const seen = new Set<string | number>();
  events.forEach((event, time) => {
    if (event.kind === 'call') {
      if (seen.has(event.id)) throw new RangeError(`history event ${time}: operation id ${String(event.id)} is called twice`);
      seen.add(event.id);
      const op: Operation<I, O> = { input: event.input, call: time, return: Infinity };
      if (event.clientId !== undefined) op.clientId = event.clientId;
      open.set(event.id, op);
      ops.push(op);
    } else {
      const op = open.get(event.id);
      if (!op) throw new RangeError(`history event ${time}: return of operation ${String(event.id)} without an open call`);
      open.delete(event.id);
      op.return = time;
      op.output = event.output;
    }
  });
  return ops;
}

/** A handle for one operation in flight, from HistoryRecorder.call. */
export interface PendingOperation<O> {
  /** The response arrived now. */
  ok(output: O): void;
  /** The outcome will never be known (timeout, connection lost, process killed). Same as never resolving. */
  unknown(): void;
  /** The operation certainly had no effect (e.g. refused before it was proposed): it leaves the history. */
  notApplied(): void;
}

/**
 * Records a history as it happens. The default clock is a counter that
 * advances on every event, valid when one process records every event in the
 * order it happens (the simulator, a test driving real processes).
 */
export class HistoryRecorder<I, O> {
  private readonly records: Array<{ op: Operation<I, O>; dropped: boolean }> = [];
  private counter = 0;
  private readonly clock: () => number;

  constructor(options: { clock?: () => number } = {}) {
    this.clock = options.clock ?? (() => this.counter++);
  }

  call(input: I, clientId?: string | number): PendingOperation<O> {
    const record = { op: { input, call: this.clock(), return: Infinity } as Operation<I, O>, dropped: false };
    if (clientId !== undefined) record.op.clientId = clientId;
    this.records.push(record);
    let settled = false;
    const settle = (): void => {
      if (settled) throw new Error('history recorder: an operation was completed twice');
      settled = true;
    };
    return {
      ok: (output) => {
        settle();
        record.op.return = this.clock();
        record.op.output = output;
      },
      unknown: () => settle(),
      notApplied: () => {
        settle();
        record.dropped = true;
      },
    };
  }

  /** The history so far; operations still in flight count as unknown outcome. */
  operations(): Operation<I, O>[] {
    return this.records.filter((r) => !r.dropped).map((r) => ({ ...r.op }));
  }
}

function validateOperation<I, O>(op: Operation<I, O>, index: number): void {
  if (!Number.isFinite(op.call)) throw new RangeError(`operation ${index}: call time ${op.call} is not a finite number`);
  if (Number.isNaN(op.return) || op.return < op.call) {
    throw new RangeError(`operation ${index}: return time ${op.return} is before its call time ${op.call}`);
  }
}

type SearchOutcome<S, I, O> =
  | { kind: 'ok' }
  | { kind: 'timeout' }
  | { kind: 'illegal'; longestPrefix: Operation<I, O>[]; stateAfterPrefix: S };

/**
 * A memoised (linearized set, state) pair. The set is stored compactly:
 * every known-outcome operation below `high` (in call order) is linearized
 * except those in `pendingKnown`, and `openBits` says which operations with
 * unknown outcome are. The search only linearizes an operation called before
 * every pending return, so `pendingKnown` holds at most the operations in
 * flight at one moment: a few words, where a plain bitset would cost n/32.
 */
interface CacheEntry<S> {
  hash2: number;
  stateHash: string | undefined;
  high: number;
  pendingKnown: Int32Array;
  openBits: Uint32Array;
  state: S;
}

/**
 * The search over one sub-history. Operations are renumbered in call order;
 * node 2i is the call of operation i and 2i+1 its return; the list head is
 * node 2n. A call's match is the next node number, so the doubly linked list
 * of events needs only next/prev arrays.
 *
 * An operation with unknown outcome has its call in the list but no return:
 * nothing forces it in, and once every known operation is linearized the
 * search is done; the open ones left over never took effect (or took effect
 * after everything else, which is the same).
 */
function searchLinearization<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  deadline: number,
  now: () => number,
  maxSteps: number,
): SearchOutcome<S, I, O> {
  const ops = history.map((op, i) => ({ op, i })).sort((a, b) => a.op.call - b.op.call || a.i - b.i).map(({ op }) => op);
  const n = ops.length;
  const isOpen = (i: number): boolean => ops[i]!.return === Infinity;

  const head = 2 * n;
  const next = new Int32Array(2 * n + 1).fill(-1);
  const prev = new Int32Array(2 * n + 1).fill(-1);
  let last = head;
  for (const node of sortedEvents(ops)) {
    if ((node & 1) === 1 && isOpen(node >>> 1)) continue;
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  const unlink = (node: number): void => {
    next[prev[node]!] = next[node]!;
    if (next[node]! !== -1) prev[next[node]!] = prev[node]!;
  };
  // The reverse of unlink, valid in stack order: the node kept its own links.
  const relink = (node: number): void => {
    next[prev[node]!] = node;
    if (next[node]! !== -1) prev[next[node]!] = node;
  };
  const lift = (call: number, open: boolean): void => {
    unlink(call);
    if (!open) unlink(call + 1);
  };
  const unlift = (call: number, open: boolean): void => {
    if (!open) relink(call + 1);
    relink(call);
  };

  // Which open operations are linearized so far.
  const openSlot = new Int32Array(n).fill(-1);
  let openCount = 0;
  for (let i = 0; i < n; i++) if (isOpen(i)) openSlot[i] = openCount++;
  const openBits = new Uint32Array((openCount + 31) >>> 5);
  let knownLeft = n - openCount;

  // The known operations not linearized yet, in call order (for the cache key).
  const knownHead = n;
  const knownNext = new Int32Array(n + 1).fill(-1);
  const knownPrev = new Int32Array(n + 1).fill(-1);
  let knownTail = knownHead;
  for (let i = 0; i < n; i++) {
    if (isOpen(i)) continue;
    knownNext[knownTail] = i;
    knownPrev[i] = knownTail;
    knownTail = i;
  }

  // Zobrist hashing of the linearized known operations: each owns two
  // random words, the hash is their xor, updated in O(1) on set and clear.
  const zobrist1 = new Uint32Array(n);
  const zobrist2 = new Uint32Array(n);
  const random = splitmix32(0x9e3779b9 ^ n);
  for (let i = 0; i < n; i++) {
    if (isOpen(i)) continue;
    zobrist1[i] = random();
    zobrist2[i] = random();
  }
  let hash1 = 0;
  let hash2 = 0;
  let high = 0;
  const cache = new Map<number, CacheEntry<S>[]>();
  const pendingScratch: number[] = [];

  // Adds (linearized ∪ {op}, state) to the cache; false if the search has
  // been there already. A stored entry with the same known operations and
  // state but a subset of the open ones also counts: from it, every future
  // of the new one is still possible (an open operation may always be left
  // out), so the new one has nothing left to find.
  const remember = (op: number, state: S): boolean => {
    const h1 = (hash1 ^ zobrist1[op]!) >>> 0;
    const h2 = (hash2 ^ zobrist2[op]!) >>> 0;
    const slot = openSlot[op]!;
    const newHigh = slot === -1 ? Math.max(high, op + 1) : high;
    pendingScratch.length = 0;
    for (let i = knownNext[knownHead]!; i !== -1 && i < newHigh; i = knownNext[i]!) if (i !== op) pendingScratch.push(i);
    const bits = openBits.slice();
    if (slot !== -1) bits[slot >>> 5] = bits[slot >>> 5]! | (1 << (slot & 31));
    const stateHash = model.hash?.(state);
    let bucket = cache.get(h1);
    if (bucket) {
      for (const entry of bucket) {
        if (entry.hash2 !== h2 || entry.high !== newHigh || entry.stateHash !== stateHash) continue;
        if (!sameList(entry.pendingKnown, pendingScratch) || !isSubset(entry.openBits, bits)) continue;
        if (model.equal(entry.state, state)) return false;
      }
    } else {
      bucket = [];
      cache.set(h1, bucket);
    }
    bucket.push({ hash2: h2, stateHash, high: newHigh, pendingKnown: Int32Array.from(pendingScratch), openBits: bits, state });
    return true;
  };

  const stackCalls: number[] = [];
  const stackStates: S[] = [];
  const stackHigh: number[] = [];
  // Whether the search committed to the operation: one that never changes
  // the state (model.isReadOnly), or one that no concurrent operation shares
  // a footprint part with. Such an operation, possible now, can always come
  // first: moving it ahead of the others in any linearization changes no
  // state they see (and no state it sees), and every operation that must
  // precede it already has. So if the search fails after it, this level
  // fails too and its other candidates need no try. (Not so for an
  // operation that merely changed nothing this time, like a delete of an
  // absent key: later, it might have had an effect.)
  const stackCommitted: boolean[] = [];
  const conflicts = trackConflicts(model, ops);
  const isOpenLinearized = (i: number): boolean => (openBits[openSlot[i]! >>> 5]! & (1 << (openSlot[i]! & 31))) !== 0;
  let state = model.init();
  // The root too, so that an open operation without effect is pruned at once.
  cache.set(0, [{ hash2: 0, stateHash: model.hash?.(state), high: 0, pendingKnown: new Int32Array(0), openBits: openBits.slice(), state }]);
  let longestPrefix: number[] | undefined;
  let stateAfterLongest = state;
  let node = next[head]!;
  let steps = 0;

  while (knownLeft > 0) {
    if ((++steps & 1023) === 0 && (now() > deadline || steps > maxSteps)) return { kind: 'timeout' };
    if ((node & 1) === 0) {
      const op = node >>> 1;
      const operation = ops[op]!;
      const [ok, nextState] = model.step(state, operation.input, operation.output);
      if (ok && remember(op, nextState)) {
        stackCalls.push(node);
        stackStates.push(state);
        stackHigh.push(high);
        stackCommitted.push(conflicts.isAlone(op, isOpenLinearized) || (model.isReadOnly?.(operation.input, operation.output) ?? false));
        state = nextState;
        const slot = openSlot[op]!;
        if (slot === -1) {
          high = Math.max(high, op + 1);
          knownLeft--;
          conflicts.update(op, -1);
          knownNext[knownPrev[op]!] = knownNext[op]!;
          if (knownNext[op]! !== -1) knownPrev[knownNext[op]!] = knownPrev[op]!;
        } else {
          openBits[slot >>> 5] = openBits[slot >>> 5]! | (1 << (slot & 31));
        }
        hash1 ^= zobrist1[op]!;
        hash2 ^= zobrist2[op]!;
        lift(node, slot !== -1);
        node = next[head]!;
      } else {
        node = next[node]!;
      }
      continue;
    }

    // A return: its operation must have been linearized by now, and every
    // call before it has been tried. Backtrack.
    if (longestPrefix === undefined || stackCalls.length > longestPrefix.length) {
      longestPrefix = stackCalls.map((c) => c >>> 1);
      stateAfterLongest = state;
    }
    if (stackCalls.length === 0) {
      return { kind: 'illegal', longestPrefix: longestPrefix.map((i) => ops[i]!), stateAfterPrefix: stateAfterLongest };
    }
    const undone = stackCalls.pop()!;
    state = stackStates.pop()!;
    high = stackHigh.pop()!;
    const committed = stackCommitted.pop()!;
    const op = undone >>> 1;
    const slot = openSlot[op]!;
    hash1 ^= zobrist1[op]!;
    hash2 ^= zobrist2[op]!;
    if (slot === -1) {
      knownLeft++;
      conflicts.update(op, 1);
      knownNext[knownPrev[op]!] = op;
      if (knownNext[op]! !== -1) knownPrev[knownNext[op]!] = op;
    } else {
      openBits[slot >>> 5] = openBits[slot >>> 5]! & ~(1 << (slot & 31));
    }
    unlift(undone, slot !== -1);
    node = next[undone]!;
    if (committed) while ((node & 1) === 0) node = next[node]!;
  }
  return { kind: 'ok' };
}

/**
 * Tracks which known-outcome operations share no footprint part with an
 * operation that could still be linearized before them: a concurrent known
 * one not yet linearized, or an open one called before they returned and
 * not yet linearized. Intervals that touch count as concurrent. Without
 * model.footprint nothing is ever alone.
 */
interface ConflictTracker {
  isAlone(op: number, isOpenLinearized: (op: number) => boolean): boolean;
  /** A known operation was linearized (+1: undone). */
  update(op: number, delta: -1 | 1): void;
}

function trackConflicts<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): ConflictTracker {
  if (!model.footprint) return { isAlone: () => false, update: () => undefined };
  const byPart = new Map<string, { known: number[]; open: number[] }>();
  const partsOf: Array<Array<{ known: number[]; open: number[] }>> = ops.map(() => []);
  ops.forEach((op, i) => {
    for (const part of new Set(model.footprint!(op.input))) {
      let lists = byPart.get(part);
      if (!lists) byPart.set(part, (lists = { known: [], open: [] }));
      (op.return === Infinity ? lists.open : lists.known).push(i);
      partsOf[i]!.push(lists);
    }
  });
  // With a single part every concurrent pair conflicts: nothing to gain.
  if (byPart.size <= 1) return { isAlone: () => false, update: () => undefined };
  // Pairs of concurrent known operations sharing a part. Lists are in call
  // order, so the operations concurrent with a later-called one follow it
  // until the first called after it returned. A pair sharing two parts is
  // counted twice, on both sides alike.
  const conflicts: number[][] = ops.map(() => []);
  for (const { known } of byPart.values()) {
    known.forEach((i, j) => {
      for (let k = j + 1; k < known.length && ops[known[k]!]!.call <= ops[i]!.return; k++) {
        conflicts[i]!.push(known[k]!);
        conflicts[known[k]!]!.push(i);
      }
    });
  }
  const pending = Int32Array.from(conflicts, (list) => list.length);
  return {
    isAlone(op, isOpenLinearized) {
      if (pending[op] !== 0 || ops[op]!.return === Infinity) return false;
      const ret = ops[op]!.return;
      for (const { open } of partsOf[op]!) {
        for (const o of open) {
          if (ops[o]!.call > ret) break;
          if (!isOpenLinearized(o)) return false;
        }
      }
      return true;
    },
    update(op, delta) {
      for (const other of conflicts[op]!) pending[other]! += delta;
    },
  };
}

function sameList(stored: Int32Array, current: readonly number[]): boolean {
  if (stored.length !== current.length) return false;
  for (let i = 0; i < stored.length; i++) if (stored[i] !== current[i]) return false;
  return true;
}

function isSubset(small: Uint32Array, big: Uint32Array): boolean {
  for (let w = 0; w < small.length; w++) if ((small[w]! & ~big[w]!) !== 0) return false;
  return true;
}

/**
 * Event nodes sorted by time. At equal times calls come before returns, so
 * operations that merely touch are treated as concurrent (the safe choice:
 * it never invents an order the clock did not show).
 */
function sortedEvents<I, O>(ops: readonly Operation<I, O>[]): number[] {
  const nodes: number[] = [];
  for (let i = 0; i < ops.length; i++) nodes.push(2 * i, 2 * i + 1);
  const time = (node: number): number => {
    const op = ops[node >>> 1]!;
    return (node & 1) === 0 ? op.call : op.return;
  };
  return nodes.sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    const kind = (a & 1) - (b & 1);
    return kind !== 0 ? kind : a - b;
  });
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const MAX_CANDIDATES = 20;

function explain<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  partitionIndex: number,
  outcome: { longestPrefix: Operation<I, O>[]; stateAfterPrefix: S },
): IllegalExplanation<I, O> {
  const { longestPrefix } = outcome;
  const inPrefix = new Set(longestPrefix);
  const rest = ops.filter((op) => !inPrefix.has(op));
  const earliestReturn = rest.reduce((min, op) => Math.min(min, op.return), Infinity);
  const candidates = rest
    .filter((op) => op.call <= earliestReturn)
    .sort((a, b) => a.call - b.call)
    .slice(0, MAX_CANDIDATES)
    .map((operation) => {
      const [ok] = model.step(outcome.stateAfterPrefix, operation.input, operation.output);
      return { operation, rejectedAfterPrefix: !ok };
    });
  const partition = describePartition(model, ops, partitionIndex);
  const stateAfterPrefix = model.describeState?.(outcome.stateAfterPrefix);

  const line = (op: Operation<I, O>): string => describeOperation(model, op);
  const text = [
    `not linearizable: ${partition} (${ops.length} operations)`,
    `longest linearizable prefix found (${longestPrefix.length} of ${ops.length}):`,
    ...longestPrefix.map((op, i) => `  ${i + 1}. ${line(op)}`),
    ...(stateAfterPrefix === undefined ? [] : [`state after it: ${stateAfterPrefix}`]),
    'no candidate for the next operation leads to a linearization:',
    ...candidates.map(
      (c) => `  ${line(c.operation)}${c.rejectedAfterPrefix ? '  <- impossible in that state' : '  <- possible here, but dead-ends later'}`,
    ),
  ].join('\n');

  const explanation: IllegalExplanation<I, O> = { partitionIndex, partition, operations: ops, longestPrefix, candidates, text };
  if (stateAfterPrefix !== undefined) explanation.stateAfterPrefix = stateAfterPrefix;
  return explanation;
}

function describePartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], index: number): string {
  return model.describePartition?.(ops) ?? `partition ${index}`;
}

function describeOperation<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const body = model.describeOperation?.(op.input, op.output) ?? `${JSON.stringify(op.input)} -> ${op.output === undefined ? '?' : JSON.stringify(op.output)}`;
  const client = op.clientId === undefined ? '' : `client ${op.clientId} `;
  const end = op.return === Infinity ? '∞ (outcome unknown)' : String(op.return);
  return `[${client}${op.call}..${end}] ${body}`;
}
