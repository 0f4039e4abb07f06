// Durable storage for one Raft node: the log in append-only segment files,
// the hard state, and snapshots.
//
// Layout of the directory:
//   wal-<seq>.seg          log segments, seq = 16 hex digits, replayed in seq order
//   snap-<index>-<term>.snap   the newest snapshot (older ones are removed once it is durable)
//   *.tmp                  a snapshot being written; removed on open
//
// Design choices, and why:
// - The log is truly append-only. Overwriting a suffix appends the new
//   entries; replay lets an entry cut everything from its index on (see
//   log-replay.ts). No ftruncate sits on the hot path, and an overwrite is
//   crash-safe by construction: the replacement is later in the file than
//   what it replaces, so it either reached the disk (and wins) or it did not
//   (and was never synced, so nobody relied on it).
// - The hard state is a record in the log, not a file of its own. It changes
//   on every commit advance; a separate file would cost write-temp, fsync,
//   rename and fsync-dir (three flushes) per sync, whereas a record of ~30 bytes
//   rides along with the entries' fdatasync. It is written at sync(), after
//   the entries, so a hard state on disk never points past entries that are
//   not. Each segment starts with the current hard state, so dropping old
//   segments never loses it.
// - Each segment starts with a log state record (snapshot index/term and
//   last index). Recovery checks every head against what it has replayed, so
//   a missing or reordered segment is an error rather than a silent gap.
// - A segment is fdatasynced before the next one is created, so a segment
//   that is not the last is always complete; any damage there is real
//   corruption. Only the last segment can have a torn tail.
// - open() always starts a fresh segment (after cutting a torn tail) and
//   makes it durable before returning; restarts are rare and this keeps
//   "only the last segment may be torn" true across restarts.

import type { Entry, HardState, Snapshot } from '../core/types.js';
import { readDiskState, repairDisk } from './disk-recovery.js';
import type { TornTail } from './disk-recovery.js';
import { joinPath, parentDir } from './file-system.js';
import type { FileSystem } from './file-system.js';
import { RecordEncoder, entryRecordBytes } from './record-codec.js';
import { segmentFileName } from './segment-file.js';
import type { SegmentFile } from './segment-file.js';
import { encodeSnapshotFile, snapshotFileName } from './snapshot-file.js';
import { StorageFailedError } from './storage-errors.js';
import { TermRuns } from './term-runs.js';

export type { TornTail } from './disk-recovery.js';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

export interface DiskStorageOptions {
  /** A segment is closed and a new one started once it would grow past this (default 64 MiB). */
  segmentBytes?: number;
}

export interface RecoveredState {
  /** {term: 0, vote: null, commit: 0} when nothing was ever persisted; commit is at least the snapshot index. */
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Every entry after the snapshot (or from the start of the log), in order. */
  entries: Entry[];
  tornTail: TornTail | null;
}

interface ActiveSegment extends SegmentFile {
  fd: number;
  size: number;
  durableSize: number;
  hasEntries: boolean;
  /** syncAsync calls waiting on this descriptor; it is closed only when none are. */
  pins: number;
  retired: boolean;
}

/** UTF-16 length that keeps a vote's UTF-8 form within the record's 16-bit length. */
const MAX_VOTE_CHARS = 16_000;
/** Largest entry data an entry record's 32-bit length can hold. */
const MAX_ENTRY_DATA_BYTES = 0xffff_ffff - 64;

function sameHardState(a: HardState | null, b: HardState): boolean {
  return a !== null && a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function checkIndex(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`raft storage: ${name} ${value} is not a non-negative safe integer`);
}

export class DiskStorage {
  private recoveredState: RecoveredState;

  private readonly encoder = new RecordEncoder();
  private readonly termRuns = new TermRuns();
  private segments: SegmentFile[] = [];
  private active!: ActiveSegment;
  private snapshotFiles: string[] = [];
  private snapIndex = 0;
  private snapTerm = 0;
  private last = 0;
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private writtenHardState: HardState | null = null;
  private dirGeneration = 0;
  private dirSyncedGeneration = 0;
  private failure: unknown = null;
  private closed = false;

  private constructor(
    private readonly fs: FileSystem,
    readonly dir: string,
    private readonly segmentBytes: number,
    recovered: RecoveredState,
  ) {
    this.recoveredState = recovered;
  }

  /** What open() found on disk (see RecoveredState). */
  get recovered(): RecoveredState {
    return this.recoveredState;
  }

  /**
   * Lets go of the recovered entries and snapshot once the host has loaded
   * them; otherwise they (and the segment buffers their data points into)
   * stay in memory after the host's own log has compacted them.
   */
  releaseRecovered(): void {
    this.recoveredState = { ...this.recoveredState, snapshot: null, entries: [] };
  }

  /**
   * Opens (creating if needed) the storage in `dir`, recovers what is on
   * disk, cuts a torn tail off the last segment, and starts a new segment.
   * Everything is durable when it returns. Throws LogCorruptionError when
   * the data is damaged anywhere but the tail.
   */
  static open(fs: FileSystem, dir: string, opts: DiskStorageOptions = {}): DiskStorage {
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1) throw new RangeError(`raft storage: segmentBytes ${segmentBytes} must be a positive integer`);
    if (!fs.exists(dir)) {
      fs.mkdirp(dir);
      fs.fsyncDir(parentDir(dir));
    }
    const state = readDiskState(fs, dir);
    repairDisk(fs, dir, state);
    const replayed = state.log;
    const hardState: HardState = {
      ...replayed.hardState,
      commit: Math.max(replayed.hardState.commit, replayed.snapshotIndex),
    };
    const storage = new DiskStorage(fs, dir, segmentBytes, {
      hardState,
      snapshot: state.snapshot,
      entries: replayed.entries,
      tornTail: state.tornTail,
    });
    storage.snapIndex = replayed.snapshotIndex;
    storage.snapTerm = replayed.snapshotTerm;
    storage.last = replayed.snapshotIndex + replayed.entries.length;
    for (const entry of replayed.entries) storage.termRuns.push(entry.index, entry.term);
    storage.hardState = hardState;
    storage.segments = state.segments;
    storage.snapshotFiles = state.snapshotName === null ? [] : [state.snapshotName];
    storage.startSegment((state.segments[state.segments.length - 1]?.seq ?? 0) + 1);
    storage.sync();
    return storage;
  }

  /** Index of the last entry (the snapshot index when no entry follows it). */
  get lastIndex(): number {
    return this.last;
  }

  get snapshotIndex(): number {
    return this.snapIndex;
  }

  /** Number of segment files, the one being written included. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /**
   * Writes entries (to the page cache: durable after sync()). When
   * entries[0].index <= lastIndex, the log from that index on is replaced.
   * Entries the snapshot already covers are skipped (as MemoryLog does).
   */
  append(all: readonly Entry[]): void {
    this.ensureUsable();
    if (all.length === 0) return;
    checkIndex('entry index', all[0]!.index);
    const covered = this.snapIndex - all[0]!.index + 1;
    if (covered >= all.length) return;
    const entries = covered > 0 ? all.slice(covered) : all;
    this.checkAppend(entries);
    this.io(() => {
      // `last` follows the records as written: an overwrite takes effect at
      // its first entry, so a segment head written by a rollover just before
      // it still describes the log that replay will have built at that point.
      this.termRuns.truncateFrom(entries[0]!.index);
      for (const entry of entries) {
        const bytes = entryRecordBytes(entry);
        const active = this.active;
        if (active.hasEntries && active.size + this.encoder.length + bytes > this.segmentBytes) this.rollover();
        this.encoder.entry(entry);
        this.active.hasEntries = true;
        if (entry.index > this.active.maxIndex) this.active.maxIndex = entry.index;
        this.last = entry.index;
        this.termRuns.push(entry.index, entry.term);
      }
      this.flush();
    });
  }

  /** Records the hard state; written and made durable by the next sync(). */
  setHardState(hs: HardState): void {
    this.ensureUsable();
    checkIndex('term', hs.term);
    checkIndex('commit', hs.commit);
    if (hs.vote !== null && (typeof hs.vote !== 'string' || hs.vote.length > MAX_VOTE_CHARS)) {
      throw new TypeError(`raft storage: vote must be null or a node id of at most ${MAX_VOTE_CHARS} characters`);
    }
    this.hardState = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  /**
   * Saves a snapshot atomically (temp file, fsync, rename, fsync dir) and
   * records it in the log; durable when it returns, together with every
   * earlier append and hard state. If the log holds the snapshot's last entry
   * (same index and term) the entries after it are kept; otherwise the
   * snapshot replaces the whole log (Raft §7) and the next append must start
   * at meta.index + 1. Older snapshot files are then removed. A snapshot
   * older than the saved one is ignored (as MemoryLog does).
   */
  saveSnapshot(snapshot: Snapshot): void {
    this.ensureUsable();
    const { index, term } = snapshot.meta;
    checkIndex('snapshot index', index);
    checkIndex('snapshot term', term);
    if (index < this.snapIndex) return;
    if (index === this.snapIndex && term !== this.snapTerm) {
      throw new Error(`raft storage: snapshot (index ${index}, term ${term}) contradicts the saved one (index ${this.snapIndex}, term ${this.snapTerm})`);
    }
    this.io(() => {
      // The log must be durable first: if the node dies after the rename,
      // recovery re-derives "keep or replace" from the log on disk, which
      // must then be the log this decision is made on.
      this.syncNow();
      const keep = index <= this.last && this.termAt(index) === term;
      const name = snapshotFileName(index, term);
      const path = joinPath(this.dir, name);
      const tmp = `${path}.tmp`;
      const fd = this.fs.openWrite(tmp);
      try {
        for (const piece of encodeSnapshotFile(snapshot)) this.fs.write(fd, piece);
        this.fs.fsync(fd);
      } finally {
        this.fs.close(fd);
      }
      this.fs.rename(tmp, path);
      this.dirGeneration++;
      this.syncDir();

      const lastIndex = keep ? this.last : index;
      this.encoder.logState({ snapshotIndex: index, snapshotTerm: term, lastIndex, segmentHead: false });
      this.flush();
      this.syncNow();
      if (keep) this.termRuns.dropBefore(index);
      else this.termRuns.clear();
      this.snapIndex = index;
      this.snapTerm = term;
      this.last = lastIndex;

      for (const old of this.snapshotFiles) {
        if (old === name) continue;
        this.fs.unlink(joinPath(this.dir, old));
        this.dirGeneration++;
      }
      this.snapshotFiles = [name];
    });
  }

  /**
   * Deletes whole segments whose entries are all <= upToIndex, oldest first,
   * never the one being written. upToIndex must not pass the saved snapshot.
   * The deletions become durable with the next sync().
   */
  compact(upToIndex: number): void {
    this.ensureUsable();
    checkIndex('compact index', upToIndex);
    if (upToIndex > this.snapIndex) {
      throw new Error(`raft storage: cannot compact up to ${upToIndex}: the saved snapshot is at ${this.snapIndex}; save a snapshot that covers it first`);
    }
    this.io(() => {
      while (this.segments.length > 1 && this.segments[0] !== this.active && this.segments[0]!.maxIndex <= upToIndex) {
        this.fs.unlink(joinPath(this.dir, this.segments[0]!.name));
        this.segments.shift();
        this.dirGeneration++;
      }
    });
  }

  /** Makes every append, the hard state, and new or removed files durable. */
  sync(): void {
    this.ensureUsable();
    this.io(() => this.syncNow());
  }

  /** Like sync(), with the data flush in the thread pool instead of blocking the event loop. */
  async syncAsync(): Promise<void> {
    this.ensureUsable();
    this.io(() => this.writeHardState());
    const active = this.active;
    const target = active.size;
    if (active.durableSize < target) {
      active.pins++;
      try {
        await this.fs.fsyncAsync(active.fd);
      } catch (error) {
        if (this.failure === null) this.failure = error;
        throw error;
      } finally {
        active.pins--;
        if (active.retired && active.pins === 0) this.fs.close(active.fd);
      }
      if (active.durableSize < target) active.durableSize = target;
    }
    if (this.closed) return; // close() synced everything
    this.ensureUsable();
    this.io(() => this.syncDir());
  }

  /** Syncs (unless an earlier failure makes that pointless) and closes the segment. */
  close(): void {
    if (this.closed) return;
    const failedBefore = this.failure !== null;
    try {
      if (!failedBefore) this.sync();
    } finally {
      this.closed = true;
      try {
        this.retire(this.active);
      } catch (error) {
        // After a failure the descriptor may be gone; that must not hide the first error.
        if (!failedBefore && this.failure === null) throw error;
      }
    }
  }

  private checkAppend(entries: readonly Entry[]): void {
    const first = entries[0]!;
    if (first.index > this.last + 1) {
      throw new RangeError(`raft storage: cannot append entry ${first.index}: the log ends at ${this.last}`);
    }
    let previousTerm = this.termAt(first.index - 1) ?? 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.index !== first.index + i) throw new RangeError(`raft storage: entries are not contiguous at ${first.index + i}`);
      checkIndex('entry term', entry.term);
      if (entry.term < previousTerm) throw new RangeError(`raft storage: entry ${entry.index} has term ${entry.term}, below ${previousTerm} before it`);
      if (!(entry.data instanceof Uint8Array)) throw new TypeError(`raft storage: entry ${entry.index} data is not a Uint8Array`);
      if (entry.data.length > MAX_ENTRY_DATA_BYTES) throw new RangeError(`raft storage: entry ${entry.index} has ${entry.data.length} bytes of data`);
      if (!Number.isInteger(entry.type) || entry.type < 0 || entry.type > 255) throw new RangeError(`raft storage: entry ${entry.index} has type ${entry.type}`);
      previousTerm = entry.term;
    }
  }

  private termAt(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex || i > this.last) return undefined;
    return this.termRuns.termAt(i);
  }

  private startSegment(seq: number): void {
    const name = segmentFileName(seq);
    const fd = this.fs.createFile(joinPath(this.dir, name));
    this.active = { seq, name, maxIndex: 0, fd, size: 0, durableSize: 0, hasEntries: false, pins: 0, retired: false };
    this.segments.push(this.active);
    this.dirGeneration++;
    this.encoder.logState({ snapshotIndex: this.snapIndex, snapshotTerm: this.snapTerm, lastIndex: this.last, segmentHead: true });
    this.encoder.hardState(this.hardState);
    this.writtenHardState = this.hardState;
    this.flush();
  }

  private rollover(): void {
    this.flush();
    const old = this.active;
    // A finished segment is complete on disk before its successor exists, so
    // damage in any segment but the last can only be corruption.
    if (old.durableSize < old.size) {
      this.fs.fsync(old.fd);
      old.durableSize = old.size;
    }
    this.retire(old);
    this.startSegment(old.seq + 1);
  }

  private retire(segment: ActiveSegment): void {
    if (segment.retired) return;
    segment.retired = true;
    if (segment.pins === 0) this.fs.close(segment.fd);
  }

  private flush(): void {
    if (this.encoder.length === 0) return;
    const bytes = this.encoder.bytes();
    this.fs.write(this.active.fd, bytes);
    this.active.size += bytes.length;
    this.encoder.clear();
  }

  private writeHardState(): void {
    if (sameHardState(this.writtenHardState, this.hardState)) return;
    this.encoder.hardState(this.hardState);
    this.writtenHardState = this.hardState;
    this.flush();
  }

  private syncNow(): void {
    this.writeHardState();
    const active = this.active;
    if (active.durableSize < active.size) {
      this.fs.fsync(active.fd);
      active.durableSize = active.size;
    }
    this.syncDir();
  }

  private syncDir(): void {
    if (this.dirSyncedGeneration === this.dirGeneration) return;
    const generation = this.dirGeneration;
    this.fs.fsyncDir(this.dir);
    this.dirSyncedGeneration = generation;
  }

  private ensureUsable(): void {
    if (this.closed) throw new Error(`raft storage in ${this.dir} is closed`);
    if (this.failure !== null) throw new StorageFailedError(this.failure);
  }

  /** Runs disk work; any failure poisons the storage (after a failed write or fsync, nothing unsynced can be trusted). */
  private io(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.failure = error;
      throw error;
    }
  }
}
