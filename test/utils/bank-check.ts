// The bank-transfer consistency check (the ATM warm-up of the Raft managers):
// accounts with balances, transfers that move money or are refused for
// insufficient funds, and reads of every balance.
//
// Two checks of different cost:
// - checkBankInvariants: every read sees the same total and no negative
//   balance. Linear time; catches lost or doubled transfers and torn reads.
// - createBankModel: the sequential specification for checkOperations. Every
//   read touches every account, so the history cannot be partitioned: keep
//   full checks to small histories (hundreds of operations, low concurrency).

import type { Model, Operation } from './linearizability.js';

export type BankInput =
  | { type: 'transfer'; from: string; to: string; amount: number }
  | { type: 'read' };

export type BankOutput =
  | { type: 'transfer'; result: 'ok' | 'insufficient' }
  | { type: 'read'; balances: Record<string, number> };

/** Balances in the order of the model's sorted account names. */
export type BankState = readonly number[];

export type BankOperation = Operation<BankInput, BankOutput>;

export interface BankModelOptions {
  /** Every account and its balance before the history starts. Amounts are integers (e.g. cents). */
  initialBalances: Record<string, number>;
}

export function createBankModel(options: BankModelOptions): Model<BankState, BankInput, BankOutput> {
  const accounts = Object.keys(options.initialBalances).sort();
  const index = new Map(accounts.map((name, i) => [name, i]));
  const initial: BankState = accounts.map((name) => options.initialBalances[name]!);
  const accountIndex = (name: string): number => {
    const i = index.get(name);
    if (i === undefined) throw new TypeError(`bank history: unknown account ${JSON.stringify(name)}`);
    return i;
  };

  return {
    init: () => initial,
    step(state, input, output) {
      if (output !== undefined && output.type !== input.type) {
        throw new TypeError(`bank history: a ${input.type} operation has a ${output.type} output`);
      }
      if (input.type === 'read') {
        // A mismatched output type was refused above.
        if (output?.type !== 'read') return [true, state];
        const balances = output.balances;
        const ok = Object.keys(balances).length === accounts.length && accounts.every((name, i) => balances[name] === state[i]);
        return [ok, state];
      }
      const from = accountIndex(input.from);
      const to = accountIndex(input.to);
      const sufficient = state[from]! >= input.amount;
      const next = sufficient ? moved(state, from, to, input.amount) : state;
      if (output?.type !== 'transfer') return [true, next];
      return output.result === (sufficient ? 'ok' : 'insufficient') ? [true, next] : [false, state];
    },
    // A refused transfer moves nothing in any state where it is refused.
    isReadOnly: (input, output) =>
      input.type === 'read' ||
      input.from === input.to ||
      input.amount === 0 ||
      (output?.type === 'transfer' && output.result === 'insufficient'),
    equal: (a, b) => a.length === b.length && a.every((v, i) => v === b[i]),
    hash: (state) => state.join(','),
    partition(history) {
      history.forEach((op, i) => validateBankOperation(op, i, index));
      // A read whose outcome is unknown changes nothing and any output would do.
      return [history.filter((op) => !(op.output === undefined && op.input.type === 'read'))];
    },
    // A guess the checker tries first: every transfer whose outcome is
    // unknown was lost. Each such transfer changes every later read, so
    // carrying them through the search is costly; the checker falls back on
    // the full history when the guess fails.
    dropUnobserved: (history) => history.filter((op) => op.output !== undefined),
    describeOperation: describeBankOperation,
    describeState: (state) => `{${accounts.map((name, i) => `${name}: ${state[i]}`).join(', ')}}`,
    describePartition: () => `bank accounts ${accounts.join(', ')}`,
  };
}

function moved(state: BankState, from: number, to: number, amount: number): BankState {
  if (from === to) return state;
  const next = state.slice();
  next[from] = next[from]! - amount;
  next[to] = next[to]! + amount;
  return next;
}

function validateBankOperation(op: BankOperation, i: number, accounts: ReadonlyMap<string, number>): void {
  const where = `bank history operation ${i}`;
  if (op.output !== undefined && op.output.type !== op.input.type) {
    throw new TypeError(`${where}: a ${op.input.type} operation has a ${op.output.type} output`);
  }
  if (op.input.type !== 'transfer') return;
  const { from, to, amount } = op.input;
  if (!accounts.has(from) || !accounts.has(to)) throw new TypeError(`${where}: unknown account in transfer ${from} -> ${to}`);
  if (!Number.isSafeInteger(amount) || amount < 0) throw new TypeError(`${where}: amount ${amount} is not a non-negative integer`);
}

export function describeBankOperation(input: BankInput, output: BankOutput | undefined): string {
  if (input.type === 'read') {
    if (output === undefined || output.type !== 'read') return 'read() -> ?';
    const balances = Object.keys(output.balances)
      .sort()
      .map((name) => `${name}: ${output.balances[name]}`)
      .join(', ');
    return `read() -> {${balances}}`;
  }
  const result = output === undefined || output.type !== 'transfer' ? '?' : output.result;
  return `transfer(${input.from} -> ${input.to}, ${input.amount}) -> ${result}`;
}

export interface BankInvariantViolation {
  operation: BankOperation;
  problem: string;
}

export interface BankInvariantReport {
  ok: boolean;
  /** The total every read must see: the expected one, or else the first read's. Null when there was nothing to compare. */
  total: number | null;
  readsChecked: number;
  violations: BankInvariantViolation[];
}

export interface BankInvariantOptions {
  /** The starting balances: fixes the total and the set of accounts. Without it the first completed read sets both. */
  initialBalances?: Record<string, number>;
}

/**
 * Every completed read must see the same total and the same accounts, and
 * no negative balance. Money is only moved, never made, so a read that sees
 * a different total saw half a transfer, a lost one or a doubled one.
 */
export function checkBankInvariants(history: readonly BankOperation[], options: BankInvariantOptions = {}): BankInvariantReport {
  let total: number | null = options.initialBalances ? sum(Object.values(options.initialBalances)) : null;
  let accounts: string | null = options.initialBalances ? Object.keys(options.initialBalances).sort().join(',') : null;
  const violations: BankInvariantViolation[] = [];
  let readsChecked = 0;

  for (const operation of history) {
    if (operation.input.type !== 'read' || operation.output?.type !== 'read') continue;
    readsChecked++;
    const balances = operation.output.balances;
    const names = Object.keys(balances).sort().join(',');
    const seen = sum(Object.values(balances));
    if (accounts === null) accounts = names;
    if (total === null) total = seen;
    if (names !== accounts) violations.push({ operation, problem: `read saw accounts [${names}], expected [${accounts}]` });
    if (seen !== total) violations.push({ operation, problem: `read saw a total of ${seen}, expected ${total}` });
    for (const [name, balance] of Object.entries(balances)) {
      if (!Number.isFinite(balance) || balance < 0) violations.push({ operation, problem: `read saw balance ${balance} for ${name}` });
    }
  }
  return { ok: violations.length === 0, total, readsChecked, violations };
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
