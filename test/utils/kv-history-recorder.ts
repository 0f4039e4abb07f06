// Records what real clients saw of the managers' key-value API as a history
// for the linearizability checker (kv-model.ts). One SDK call is one
// operation: the call time is taken before the call, the return time after
// it, on this process's performance.now() clock; the SDK's own retries across
// managers (with one idempotency key) happen inside that interval.
//
// Outcomes:
// - a reply: the operation with its output;
// - the SDK gave up (no manager answered in time, a 504, a lost connection):
//   a write's outcome is unknown (output undefined, return +Infinity); a read
//   changed nothing, so it leaves the history;
// - any other HTTP error (400, 500) is a bug in the test or the server and is
//   thrown, never recorded.
import { ManagerUnavailableError, type ManagerClient } from '../../src/client/manager-client.js';
import { HistoryRecorder } from './linearizability.js';
import type { KvInput, KvOperation, KvOutput } from './kv-model.js';

export interface KvHistoryCounts {
  /** Operations with a reply. */
  completed: number;
  /** Writes whose outcome is unknown. */
  unknown: number;
  /** Reads that failed and left the history. */
  droppedReads: number;
}

export class KvHistory {
  private readonly recorder = new HistoryRecorder<KvInput, KvOutput>({ clock: () => performance.now() });
  readonly counts: KvHistoryCounts = { completed: 0, unknown: 0, droppedReads: 0 };

  /** Runs `call` as one operation with `input`; undefined when the outcome is unknown or the read failed. */
  async record(clientId: string | number, input: KvInput, call: () => Promise<KvOutput>): Promise<KvOutput | undefined> {
    const pending = this.recorder.call(input, clientId);
    let output: KvOutput;
    try {
      output = await call();
    } catch (e) {
      if (!isUnknownOutcome(e)) {
        pending.notApplied();
        throw e;
      }
      if (input.type === 'get') {
        pending.notApplied();
        this.counts.droppedReads++;
      } else {
        pending.unknown();
        this.counts.unknown++;
      }
      return undefined;
    }
    pending.ok(output);
    this.counts.completed++;
    return output;
  }

  operations(): KvOperation[] {
    return this.recorder.operations();
  }
}

/** The SDK gave up without a definite answer (its retries cover 503s, 504s and connection errors). */
export function isUnknownOutcome(e: unknown): boolean {
  return e instanceof ManagerUnavailableError;
}

/** A ManagerClient whose get/put/delete/cas calls land in a KvHistory. */
export class RecordingKvClient {
  constructor(
    readonly client: ManagerClient,
    readonly history: KvHistory,
    readonly clientId: string | number,
    private readonly readOptions: { stale?: boolean } = {},
  ) {}

  /** The value read (null = absent), or undefined when the read failed. */
  async get(key: string): Promise<string | null | undefined> {
    const out = await this.history.record(this.clientId, { type: 'get', key }, async () => {
      const item = await this.client.get(key, this.readOptions);
      return { type: 'get', value: item ? item.value : null };
    });
    return out?.type === 'get' ? out.value : undefined;
  }

  /** True when acknowledged, undefined when the outcome is unknown. */
  async put(key: string, value: string): Promise<true | undefined> {
    const out = await this.history.record(this.clientId, { type: 'put', key, value }, async () => {
      await this.client.put(key, value);
      return { type: 'put' };
    });
    return out ? true : undefined;
  }

  /** Whether the key existed, or undefined when the outcome is unknown. */
  async delete(key: string): Promise<boolean | undefined> {
    const out = await this.history.record(this.clientId, { type: 'delete', key }, async () => {
      const r = await this.client.delete(key);
      return { type: 'delete', existed: r.deleted };
    });
    return out?.type === 'delete' ? out.existed : undefined;
  }

  /** The CAS result (with the current value on failure), or undefined when the outcome is unknown. */
  async cas(key: string, expected: string | null, value: string): Promise<{ ok: boolean; current?: string | null } | undefined> {
    const out = await this.history.record(this.clientId, { type: 'cas', key, expected, value }, async () => {
      const r = await this.client.cas(key, expected, value);
      return r.ok ? { type: 'cas', ok: true } : { type: 'cas', ok: false, current: r.current };
    });
    return out?.type === 'cas' ? { ok: out.ok, ...(out.current !== undefined ? { current: out.current } : {}) } : undefined;
  }
}
