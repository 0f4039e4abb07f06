// A replicated key-value state machine (etcd-like): get, put, delete,
// compare-and-set and multi-key transactions, with a global revision and
// request-id deduplication so a retried command is applied once (thesis §6.3).
// Deterministic: every replica that applies the same commands in the same
// order reaches the same state and the same results.

export interface KvEntry {
  value: string;
  /** Revision of the write that last changed this key. */
  modRevision: number;
  createRevision: number;
  version: number;
}

export type KvCompare = { key: string; value: string | null };

export type KvWrite = { op: 'put'; key: string; value: string } | { op: 'delete'; key: string };

export type KvCommand =
  | { op: 'put'; key: string; value: string; rid?: string }
  | { op: 'delete'; key: string; rid?: string }
  /** expected === null means "the key must be absent". */
  | { op: 'cas'; key: string; expected: string | null; value: string | null; rid?: string }
  | {
      op: 'txn';
      compare: KvCompare[];
      success: KvWrite[];
      failure?: KvWrite[];
      /** Keys whose values the result returns (read at the txn's point in the order). */
      read?: string[];
      rid?: string;
    }
  /** A read through the log (slower than ReadIndex; used to test both paths). */
  | { op: 'get'; key: string; rid?: string };

export type KvResult =
  | { op: 'put'; revision: number; prev: string | null }
  | { op: 'delete'; revision: number; deleted: boolean }
  | { op: 'cas'; ok: boolean; revision: number; current: string | null }
  | { op: 'txn'; succeeded: boolean; revision: number; values?: Record<string, string | null> }
  | { op: 'get'; value: string | null; revision: number };

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeKvCommand(c: KvCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeKvCommand(data: Uint8Array): KvCommand {
  return JSON.parse(dec.decode(data)) as KvCommand;
}

/** How many recent request ids are remembered for deduplication. */
const DEFAULT_DEDUP_WINDOW = 100_000;

export class KvStateMachine {
  private data = new Map<string, KvEntry>();
  private revision = 0;
  /** rid -> result, in insertion order so eviction is deterministic. */
  private results = new Map<string, KvResult>();

  constructor(private readonly dedupWindow = DEFAULT_DEDUP_WINDOW) {}

  get currentRevision(): number {
    return this.revision;
  }

  get size(): number {
    return this.data.size;
  }

  /** Local read of applied state (serve only after ReadIndex, or as a stale read). */
  get(key: string): KvEntry | undefined {
    return this.data.get(key);
  }

  /** Keys with the given prefix, sorted, with their entries. */
  range(prefix: string): [string, KvEntry][] {
    const out: [string, KvEntry][] = [];
    for (const [k, v] of this.data) if (k.startsWith(prefix)) out.push([k, v]);
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return out;
  }

  applyEncoded(data: Uint8Array): KvResult {
    return this.apply(decodeKvCommand(data));
  }

  apply(c: KvCommand): KvResult {
    if (c.rid !== undefined) {
      const prev = this.results.get(c.rid);
      if (prev) return prev;
    }
    const r = this.execute(c);
    if (c.rid !== undefined) {
      this.results.set(c.rid, r);
      if (this.results.size > this.dedupWindow) {
        const oldest = this.results.keys().next().value as string;
        this.results.delete(oldest);
      }
    }
    return r;
  }

  private execute(c: KvCommand): KvResult {
    switch (c.op) {
      case 'put': {
        const prev = this.data.get(c.key)?.value ?? null;
        this.write({ op: 'put', key: c.key, value: c.value }, ++this.revision);
        return { op: 'put', revision: this.revision, prev };
      }
      case 'delete': {
        const had = this.data.has(c.key);
        if (had) this.write({ op: 'delete', key: c.key }, ++this.revision);
        return { op: 'delete', revision: this.revision, deleted: had };
      }
      case 'cas': {
        const current = this.data.get(c.key)?.value ?? null;
        if (current !== c.expected) return { op: 'cas', ok: false, revision: this.revision, current };
        const w: KvWrite = c.value === null ? { op: 'delete', key: c.key } : { op: 'put', key: c.key, value: c.value };
        this.write(w, ++this.revision);
        return { op: 'cas', ok: true, revision: this.revision, current: c.value };
      }
      case 'txn': {
        const succeeded = c.compare.every((cmp) => (this.data.get(cmp.key)?.value ?? null) === cmp.value);
        const writes = succeeded ? c.success : (c.failure ?? []);
        if (writes.length > 0) {
          const rev = ++this.revision;
          for (const w of writes) this.write(w, rev);
        }
        const r: KvResult = { op: 'txn', succeeded, revision: this.revision };
        if (c.read && c.read.length > 0) {
          r.values = {};
          for (const k of c.read) r.values[k] = this.data.get(k)?.value ?? null;
        }
        return r;
      }
      case 'get':
        return { op: 'get', value: this.data.get(c.key)?.value ?? null, revision: this.revision };
    }
  }

  private write(w: KvWrite, rev: number): void {
    if (w.op === 'delete') {
      this.data.delete(w.key);
      return;
    }
    const prev = this.data.get(w.key);
    this.data.set(w.key, {
      value: w.value,
      modRevision: rev,
      createRevision: prev?.createRevision ?? rev,
      version: (prev?.version ?? 0) + 1,
    });
  }

  snapshot(): Uint8Array {
    return enc.encode(
      JSON.stringify({
        revision: this.revision,
        data: [...this.data.entries()],
        results: [...this.results.entries()],
      }),
    );
  }

  restore(bytes: Uint8Array): void {
    const s = JSON.parse(dec.decode(bytes)) as {
      revision: number;
      data: [string, KvEntry][];
      results: [string, KvResult][];
    };
    this.revision = s.revision;
    this.data = new Map(s.data);
    this.results = new Map(s.results);
  }
}
