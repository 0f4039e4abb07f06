// Turn the simulator's recorded client operations into the checker's form.
import type { KvInput, KvOperation, KvOutput } from '../../utils/kv-model.js';
import type { BankOperation } from '../../utils/bank-check.js';
import type { BankHistoryOp, HistoryOp } from './sim-cluster.js';

export function toKvOperations(history: readonly HistoryOp[]): KvOperation[] {
  return history.map((h) => {
    const { input, output } = convert(h);
    return { input, output, call: h.call, return: h.ret, clientId: h.client };
  });
}

function convert(h: HistoryOp): { input: KvInput; output: KvOutput | undefined } {
  const c = h.input;
  const r = h.output;
  switch (c.op) {
    case 'get':
      return { input: { type: 'get', key: c.key }, output: r && r.op === 'get' ? { type: 'get', value: r.value } : undefined };
    case 'put':
      return { input: { type: 'put', key: c.key, value: c.value }, output: r ? { type: 'put' } : undefined };
    case 'delete':
      return {
        input: { type: 'delete', key: c.key },
        output: r && r.op === 'delete' ? { type: 'delete', existed: r.deleted } : undefined,
      };
    case 'cas': {
      if (c.value === null) throw new Error('history: cas-to-delete is not in the checker model');
      return {
        input: { type: 'cas', key: c.key, expected: c.expected, value: c.value },
        output: r && r.op === 'cas' ? { type: 'cas', ok: r.ok, ...(r.ok ? {} : { current: r.current }) } : undefined,
      };
    }
    case 'txn':
      return {
        input: {
          type: 'txn',
          compares: c.compare.map((x) => ({ key: x.key, value: x.value })),
          success: c.success.map((w) => (w.op === 'put' ? { type: 'put', key: w.key, value: w.value } : { type: 'delete', key: w.key })),
          failure: (c.failure ?? []).map((w) =>
            w.op === 'put' ? { type: 'put', key: w.key, value: w.value } : { type: 'delete', key: w.key },
          ),
        },
        output: r && r.op === 'txn' ? { type: 'txn', succeeded: r.succeeded } : undefined,
      };
  }
}

export function toBankOperations(history: readonly BankHistoryOp[]): BankOperation[] {
  return history.map((h) => ({ input: h.input, output: h.output, call: h.call, return: h.ret, clientId: h.client }));
}
