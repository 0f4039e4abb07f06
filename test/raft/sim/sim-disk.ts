// What a simulated node keeps across a crash. Two implementations:
// - ModelDisk: a small model of durability (what was synced survives; with
//   torn writes, a prefix of the unsynced appends may survive too);
// - the real DiskStorage running on a SimFileSystem (see real-sim-disk.ts),
//   so the simulator also exercises the real recovery code.
import type { Entry, HardState, Snapshot } from '../../../src/raft/core/types.js';
import type { Rng } from './rng.js';

export interface Recovered {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

export interface SimDisk {
  append(entries: Entry[]): void;
  setHardState(hs: HardState): void;
  /** Durable when it returns. */
  saveSnapshot(s: Snapshot): void;
  compact(upTo: number): void;
  /** Everything written so far becomes durable. */
  sync(): void;
  /** Power loss: whatever was not synced is lost (a torn prefix may survive). */
  crash(rng: Rng, tornWrites: boolean): void;
  recover(): Recovered;
}

type Op =
  | { kind: 'append'; entries: Entry[] }
  | { kind: 'hard'; hs: HardState }
  | { kind: 'compact'; upTo: number };

interface DurableState {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[]; // after the snapshot (or compaction point)
}

export class ModelDisk implements SimDisk {
  private durable: DurableState = { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] };
  private pending: Op[] = [];

  append(entries: Entry[]): void {
    if (entries.length > 0) this.pending.push({ kind: 'append', entries: entries.slice() });
  }

  setHardState(hs: HardState): void {
    this.pending.push({ kind: 'hard', hs: { ...hs } });
  }

  saveSnapshot(s: Snapshot): void {
    this.sync();
    const d = this.durable;
    if (d.snapshot && d.snapshot.meta.index >= s.meta.index) return;
    d.snapshot = s;
    d.entries = d.entries.filter((e) => e.index > s.meta.index);
    // keep entries only if they continue the snapshot
    if (d.entries.length > 0 && d.entries[0]!.index !== s.meta.index + 1) d.entries = [];
  }

  compact(upTo: number): void {
    this.pending.push({ kind: 'compact', upTo });
  }

  sync(): void {
    for (const op of this.pending) applyOp(this.durable, op);
    this.pending = [];
  }

  crash(rng: Rng, tornWrites: boolean): void {
    if (tornWrites && this.pending.length > 0) {
      // The page cache reached disk in order up to some point; the record being
      // written at that point is torn and will be discarded by recovery.
      const survive = rng.int(0, this.pending.length);
      for (let i = 0; i < survive; i++) {
        const op = this.pending[i]!;
        if (op.kind === 'append' && i === survive - 1 && op.entries.length > 1) {
          applyOp(this.durable, { kind: 'append', entries: op.entries.slice(0, rng.int(0, op.entries.length - 1)) });
        } else {
          applyOp(this.durable, op);
        }
      }
    }
    this.pending = [];
  }

  recover(): Recovered {
    const d = this.durable;
    return { hardState: { ...d.hardState }, snapshot: d.snapshot, entries: d.entries.slice() };
  }
}

function applyOp(d: DurableState, op: Op): void {
  switch (op.kind) {
    case 'hard':
      d.hardState = op.hs;
      return;
    case 'compact': {
      d.entries = d.entries.filter((e) => e.index > op.upTo);
      return;
    }
    case 'append': {
      if (op.entries.length === 0) return;
      const first = op.entries[0]!.index;
      d.entries = d.entries.filter((e) => e.index < first);
      const base = d.snapshot?.meta.index ?? 0;
      const last = d.entries.length > 0 ? d.entries[d.entries.length - 1]!.index : base;
      if (first !== last + 1 && !(d.entries.length === 0 && first <= base + 1)) {
        throw new Error(`model disk: gap appending ${first} after ${last}`);
      }
      for (const e of op.entries) if (e.index > base) d.entries.push(e);
      return;
    }
  }
}
