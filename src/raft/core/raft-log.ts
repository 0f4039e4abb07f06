// The Raft log as the core sees it: the stable part (LogReader, already on
// disk) followed by an unstable tail (appended here, not yet persisted), plus
// the commit and apply positions. Pure: no I/O.
import {
  CompactedError,
  UnavailableError,
  type Entry,
  type LogReader,
  type Snapshot,
} from './types.js';

function entrySize(e: Entry): number {
  return e.data.byteLength + 24;
}

export class RaftLog {
  /** Entries not yet persisted; unstable[0].index === unstableOffset. */
  private unstable: Entry[] = [];
  private unstableOffset: number;
  /** A snapshot received from the leader and not yet persisted. */
  unstableSnapshot: Snapshot | null = null;
  committed: number;
  applied: number;

  constructor(
    readonly storage: LogReader,
    applied = 0,
  ) {
    const first = storage.firstIndex();
    this.unstableOffset = storage.lastIndex() + 1;
    // The host restores its state machine from the snapshot, which may be newer
    // than the compaction point when trailing entries are kept for followers.
    const base = Math.max(first - 1, storage.snapshot().meta.index);
    this.committed = base;
    this.applied = base;
    const hs = storage.initialState().hardState;
    if (hs.commit > this.committed) this.committed = hs.commit;
    if (applied > this.applied) this.applied = Math.min(applied, this.committed);
  }

  firstIndex(): number {
    if (this.unstableSnapshot) return this.unstableSnapshot.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.unstableOffset + this.unstable.length - 1;
    if (this.unstableSnapshot) return this.unstableSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of entry i; 0 when i is out of range (compacted or beyond the end). */
  term(i: number): number {
    const t = this.termOrThrow(i);
    return t ?? 0;
  }

  /** Term of entry i, or undefined if it is beyond the log; throws CompactedError. */
  termOrThrow(i: number): number | undefined {
    if (i > this.lastIndex()) return undefined;
    if (i >= this.unstableOffset && this.unstable.length > 0) {
      return this.unstable[i - this.unstableOffset]!.term;
    }
    if (this.unstableSnapshot) {
      if (i === this.unstableSnapshot.meta.index) return this.unstableSnapshot.meta.term;
      if (i < this.unstableSnapshot.meta.index) throw new CompactedError(i);
    }
    const snapIndex = this.storage.firstIndex() - 1;
    if (i < snapIndex) throw new CompactedError(i);
    if (i === snapIndex) {
      const s = this.storage.snapshot();
      if (s.meta.index === i) return s.meta.term;
    }
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof UnavailableError) return undefined;
      throw e;
    }
  }

  matchTerm(i: number, t: number): boolean {
    try {
      const got = this.termOrThrow(i);
      return got !== undefined && got === t;
    } catch (e) {
      if (e instanceof CompactedError) return false;
      throw e;
    }
  }

  /** §5.4.1: is a candidate's log (lastIndex, lastTerm) at least as up-to-date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries (§5.3). Returns the index of the last new
   * entry, or null if the log does not contain an entry at prevIndex with
   * prevTerm (the consistency check failed).
   */
  maybeAppend(prevIndex: number, prevTerm: number, leaderCommit: number, ents: Entry[]): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new Error(`raft log: entry ${conflict} conflicts with committed entry (committed=${this.committed})`);
      }
      this.append(ents.slice(conflict - prevIndex - 1));
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  /**
   * The index of the first entry of `ents` that is new or conflicts with the
   * log (different term at the same index), or 0 if all are already present.
   */
  private findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast back-off (§5.3, "the follower can include the term of the conflicting
   * entry"): the largest index <= index whose term is <= term, together with
   * that entry's term.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > 0; i--) {
      let t: number | undefined;
      try {
        t = this.termOrThrow(i);
      } catch (e) {
        if (e instanceof CompactedError) return { index: i, term: 0 };
        throw e;
      }
      if (t !== undefined && t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  /** Append entries (their indices must continue or overwrite the log). Returns the new last index. */
  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    if (after < this.committed) {
      throw new Error(`raft log: appending after ${after} would overwrite committed entries (committed=${this.committed})`);
    }
    this.truncateAndAppend(ents);
    return this.lastIndex();
  }

  private truncateAndAppend(ents: Entry[]): void {
    const first = ents[0]!.index;
    if (first === this.unstableOffset + this.unstable.length) {
      for (const e of ents) this.unstable.push(e);
    } else if (first <= this.unstableOffset) {
      // Replace the whole unstable tail (and, once persisted, part of the stable log).
      this.unstableOffset = first;
      this.unstable = ents.slice();
    } else {
      this.unstable = this.unstable.slice(0, first - this.unstableOffset);
      for (const e of ents) this.unstable.push(e);
    }
  }

  /** Entries in [lo, hi), about maxBytes at most (never fewer than one). */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let size = 0;
    if (lo < this.unstableOffset) {
      const stable = this.storage.entries(lo, Math.min(hi, this.unstableOffset), maxBytes);
      for (const e of stable) {
        size += entrySize(e);
        out.push(e);
      }
      if (stable.length < Math.min(hi, this.unstableOffset) - lo) return out; // size limit hit
    }
    if (hi > this.unstableOffset) {
      for (let i = Math.max(lo, this.unstableOffset); i < hi; i++) {
        const e = this.unstable[i - this.unstableOffset]!;
        size += entrySize(e);
        if (out.length > 0 && size > maxBytes) break;
        out.push(e);
      }
    }
    return out;
  }

  entriesFrom(lo: number, maxBytes = Infinity): Entry[] {
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  commitTo(c: number): void {
    if (c > this.committed) {
      if (c > this.lastIndex()) {
        throw new Error(`raft log: commit ${c} is beyond the last index ${this.lastIndex()}`);
      }
      this.committed = c;
    }
  }

  /** §5.4.2 (Figure 8): commit only an entry of the current term counted on a quorum. */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new Error(`raft log: applied(${i}) out of range [applied(${this.applied}), committed(${this.committed})]`);
    }
    this.applied = i;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  nextCommittedEntries(maxBytes = Infinity): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 > lo) return this.slice(lo, this.committed + 1, maxBytes);
    return [];
  }

  unstableEntries(): Entry[] {
    return this.unstable.slice();
  }

  hasUnstable(): boolean {
    return this.unstable.length > 0;
  }

  /** The host persisted entries up to (i, t): they are now in storage. */
  stableTo(i: number, t: number): void {
    if (this.unstable.length === 0) return;
    const got = i >= this.unstableOffset ? this.unstable[i - this.unstableOffset] : undefined;
    // If the entry was replaced meanwhile (a new leader overwrote it), keep it unstable.
    if (got && got.term === t) {
      this.unstable = this.unstable.slice(i + 1 - this.unstableOffset);
      this.unstableOffset = i + 1;
    }
  }

  stableSnapTo(i: number): void {
    if (this.unstableSnapshot && this.unstableSnapshot.meta.index === i) this.unstableSnapshot = null;
  }

  /** Reset to a snapshot received from the leader (§7). */
  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstableOffset = s.meta.index + 1;
    this.unstable = [];
    this.unstableSnapshot = s;
  }

  snapshot(): Snapshot {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }
}
