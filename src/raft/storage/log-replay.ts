// Rebuilds the logical Raft log from the records of the segments, in order.
//
// The log on disk is append-only: an overwrite of a suffix is just an entry
// whose index is not past the end, and it cuts everything from that index on
// as it is replayed. Because records are replayed in the order they were
// written, an overwrite that reached the disk always wins over the entries it
// replaced, and an overwrite that did not reach the disk was never synced.
//
// Log state records ("the log is snapshot (S, T) plus entries up to L") are
// checked against what replay has built so far; any disagreement means a
// segment is missing or damaged and recovery stops with an error.

import type { Entry, HardState } from '../core/types.js';
import type { LogState } from './record-codec.js';

export interface ReplayedLog {
  snapshotIndex: number;
  snapshotTerm: number;
  /** Entries snapshotIndex+1 … in order. */
  entries: Entry[];
  hardState: HardState;
}

/** Thrown by LogReplay when the records contradict each other; the caller adds file and offset. */
export class ReplayError extends Error {}

export class LogReplay {
  private started = false;
  private base = 0;
  private baseTerm = 0;
  /**
   * Entries (base, phantomHi] existed when the oldest segment present was
   * started but live in segments that are gone. That is fine only if a later
   * snapshot covers them (compaction removed them); finish() checks.
   */
  private phantomHi = 0;
  /** entries[i].index === phantomHi + 1 + i. */
  private entries: Entry[] = [];
  private hardState: HardState = { term: 0, vote: null, commit: 0 };

  get lastIndex(): number {
    return this.phantomHi + this.entries.length;
  }

  /**
   * A segment head. `startsRun` is true for the oldest segment present and for
   * a segment whose predecessor is gone (compaction removes segments oldest
   * first, so older ones can outlive newer ones after a crash): there the
   * head's state is taken as given instead of checked.
   */
  segmentHead(state: LogState, startsRun: boolean): void {
    if (startsRun || !this.started) {
      if (state.lastIndex < state.snapshotIndex) throw new ReplayError('segment head has last index below its snapshot index');
      if (this.started && state.snapshotIndex < this.base) throw new ReplayError('snapshot index went backwards');
      this.started = true;
      this.base = state.snapshotIndex;
      this.baseTerm = state.snapshotTerm;
      this.phantomHi = state.lastIndex;
      this.entries = [];
      return;
    }
    this.logState(state);
  }

  logState(state: LogState): void {
    this.requireStarted();
    const { snapshotIndex: s, snapshotTerm: t, lastIndex: l } = state;
    if (l < s) throw new ReplayError(`log state has last index ${l} below its snapshot index ${s}`);
    if (s < this.base) throw new ReplayError(`snapshot index went backwards from ${this.base} to ${s}`);
    if (l > s) {
      // The entries after the snapshot were kept; replay must have them all.
      if (this.lastIndex !== l) {
        throw new ReplayError(`log state says the log ends at ${l} but the records before it end at ${this.lastIndex}`);
      }
      if (s > this.phantomHi) {
        const at = this.entries[s - this.phantomHi - 1];
        if (at && at.term !== t) throw new ReplayError(`snapshot at ${s} has term ${t} but the log's entry there has term ${at.term}`);
        this.entries = this.entries.slice(s - this.phantomHi);
        this.phantomHi = s;
      }
    } else {
      this.entries = [];
      this.phantomHi = s;
    }
    this.base = s;
    this.baseTerm = t;
  }

  entry(entry: Entry): void {
    this.requireStarted();
    if (entry.index <= this.base) throw new ReplayError(`entry ${entry.index} is not after the snapshot at ${this.base}`);
    const last = this.lastIndex;
    if (entry.index > last + 1) throw new ReplayError(`entry ${entry.index} follows ${last}: entries are missing`);
    if (entry.index <= this.phantomHi) {
      this.phantomHi = entry.index - 1;
      this.entries = [];
    } else if (entry.index <= last) {
      this.entries.length = entry.index - this.phantomHi - 1;
    }
    this.entries.push(entry);
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  /**
   * The log after applying the newest durable snapshot. A snapshot newer than
   * the last log state means the process died between making the snapshot
   * durable and recording it in the log; the rule it would have recorded is
   * applied here (keep the entries after it if the log holds the snapshot's
   * last entry with the same term, otherwise the snapshot replaces the log).
   */
  finish(snapshot: { index: number; term: number } | null): ReplayedLog {
    const snapIndex = snapshot?.index ?? 0;
    const snapTerm = snapshot?.term ?? 0;
    if (this.phantomHi > this.base) {
      throw new ReplayError(
        `entries ${this.base + 1}..${this.phantomHi} are in no segment and no snapshot covers them: a segment file is missing`,
      );
    }
    if (snapIndex < this.base) {
      throw new ReplayError(`the log starts after a snapshot at index ${this.base} but the newest snapshot file is at ${snapIndex}`);
    }
    if (snapIndex === this.base) {
      if (snapTerm !== this.baseTerm) {
        throw new ReplayError(`the log's snapshot at ${snapIndex} has term ${this.baseTerm}, the snapshot file has term ${snapTerm}`);
      }
    } else {
      const at = this.entries[snapIndex - this.phantomHi - 1];
      if (at !== undefined && at.term === snapTerm) {
        this.entries = this.entries.slice(snapIndex - this.phantomHi);
      } else {
        this.entries = [];
      }
      this.phantomHi = snapIndex;
      this.base = snapIndex;
      this.baseTerm = snapTerm;
    }
    return { snapshotIndex: this.base, snapshotTerm: this.baseTerm, entries: this.entries, hardState: this.hardState };
  }

  private requireStarted(): void {
    if (!this.started) throw new ReplayError('record before the first segment head');
  }
}
