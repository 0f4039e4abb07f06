// The stable log as the Raft core reads it: what the host has persisted, kept
// in memory. The host appends here only after the disk write is durable, so
// the core never treats a volatile entry as stable.
import {
  CompactedError,
  UnavailableError,
  type ConfState,
  type Entry,
  type HardState,
  type LogReader,
  type Snapshot,
} from '../core/types.js';

export function emptySnapshot(conf: ConfState = { voters: [], learners: [] }): Snapshot {
  return { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) };
}

export function entryBytes(e: Entry): number {
  return e.data.byteLength + 24;
}

export class MemoryLog implements LogReader {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot;
  /** ents[0] is a dummy entry at the snapshot's index/term; real entries follow. */
  private ents: Entry[];

  constructor(snapshot: Snapshot = emptySnapshot()) {
    this.snap = snapshot;
    this.ents = [dummy(snapshot.meta.index, snapshot.meta.term)];
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: { ...this.hardState }, conf: cloneConf(this.snap.meta.conf) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  getHardState(): HardState {
    return { ...this.hardState };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.offset();
    if (i < off) throw new CompactedError(i);
    if (i - off >= this.ents.length) throw new UnavailableError(i);
    return this.ents[i - off]!.term;
  }

  entries(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    const off = this.offset();
    if (lo <= off) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - off]!;
      size += entryBytes(e);
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Append persisted entries; a conflicting suffix is replaced. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // all already compacted
    let ents = entries;
    if (first > ents[0]!.index) ents = ents.slice(first - ents[0]!.index);
    const at = ents[0]!.index - this.offset();
    if (at > this.ents.length) {
      throw new Error(`memory log: missing entries between ${this.lastIndex()} and ${ents[0]!.index}`);
    }
    this.ents.length = at;
    for (const e of ents) this.ents.push(e);
  }

  /** Replace everything with a snapshot (received from a leader or loaded at start). */
  applySnapshot(snap: Snapshot): void {
    if (snap.meta.index < this.snap.meta.index) return;
    this.snap = snap;
    this.ents = [dummy(snap.meta.index, snap.meta.term)];
  }

  /**
   * Record a snapshot taken locally at `index` (which must be applied) and drop
   * the entries it covers, keeping `keepTrailing` entries so that slow
   * followers can still be caught up from the log rather than a snapshot.
   */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array, addresses?: Record<string, string>): Snapshot {
    if (index <= this.snap.meta.index) return this.snap;
    if (index > this.lastIndex()) throw new UnavailableError(index);
    const term = this.term(index);
    this.snap = { meta: { index, term, conf: cloneConf(conf), ...(addresses ? { addresses } : {}) }, data };
    return this.snap;
  }

  /** Drop entries up to and including `index` (must not pass the last index). */
  compact(index: number): void {
    const off = this.offset();
    if (index <= off) return;
    if (index > this.lastIndex()) throw new UnavailableError(index);
    const term = this.ents[index - off]!.term;
    this.ents = [dummy(index, term), ...this.ents.slice(index - off + 1)];
  }
}

function dummy(index: number, term: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(0) };
}

export function cloneConf(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}
