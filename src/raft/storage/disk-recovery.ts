// Recovery of a storage directory, in two steps: readDiskState() reads and
// checks everything without changing a byte (so a corruption error leaves
// the evidence intact), then repairDisk() cuts the torn tail and removes
// leftovers, durably, before the storage writes anything new.

import type { Snapshot } from '../core/types.js';
import { joinPath } from './file-system.js';
import type { FileSystem } from './file-system.js';
import { LogReplay, ReplayError } from './log-replay.js';
import type { ReplayedLog } from './log-replay.js';
import { RecordDecoder } from './record-codec.js';
import { parseSegmentFileName } from './segment-file.js';
import type { SegmentFile } from './segment-file.js';
import { decodeSnapshotFile, parseSnapshotFileName } from './snapshot-file.js';
import { LogCorruptionError } from './storage-errors.js';

/** A damaged tail of the last segment that recovery cut off (the write was in flight when the node died). */
export interface TornTail {
  file: string;
  offset: number;
  droppedBytes: number;
  reason: string;
}

export interface DiskState {
  snapshot: Snapshot | null;
  snapshotName: string | null;
  log: ReplayedLog;
  /** Segments that stay, in replay order. */
  segments: SegmentFile[];
  tornTail: TornTail | null;
  /** Files to remove: an empty or wholly torn last segment, temp files, superseded snapshots. */
  remove: string[];
  /** Snapshot files whose checksum fails; renamed to *.corrupt for forensics. */
  setAside: string[];
}

/** Reads and checks the directory; throws LogCorruptionError on damage that is not a torn tail. */
export function readDiskState(fs: FileSystem, dir: string): DiskState {
  const names = fs.readdir(dir);
  const { snapshot, snapshotName, corrupt } = readNewestSnapshot(fs, dir, names);
  const segments = names
    .map((name) => ({ name, seq: parseSegmentFileName(name) }))
    .filter((s): s is { name: string; seq: number } => s.seq !== null)
    .sort((a, b) => a.seq - b.seq);

  const replay = new LogReplay();
  const kept: SegmentFile[] = [];
  const remove: string[] = [];
  let tornTail: TornTail | null = null;
  for (let i = 0; i < segments.length; i++) {
    const { name, seq } = segments[i]!;
    const path = joinPath(dir, name);
    const isLast = i === segments.length - 1;
    // Compaction removes segments oldest first, but a crash can keep an old
    // one whose successor's removal did reach the disk: a gap starts a new run.
    const startsRun = i === 0 || seq !== segments[i - 1]!.seq + 1;
    const scanned = replaySegment(replay, fs.readFile(path), path, isLast, startsRun);
    if (scanned.tornAt !== null) tornTail = scanned.tornAt;
    if (scanned.validBytes === 0) {
      // Created, then the node died before its head reached the disk.
      if (!isLast) throw new LogCorruptionError(path, 0, 'the segment is empty but is not the last one');
      remove.push(name);
    } else {
      kept.push({ seq, name, maxIndex: scanned.maxIndex });
    }
  }

  let log: ReplayedLog;
  try {
    log = replay.finish(snapshot ? { index: snapshot.meta.index, term: snapshot.meta.term } : null);
  } catch (error) {
    if (error instanceof ReplayError) throw new LogCorruptionError(dir, null, error.message);
    throw error;
  }
  for (const name of names) {
    if (name.endsWith('.tmp')) remove.push(name);
    else if (parseSnapshotFileName(name) !== null && name !== snapshotName && !corrupt.includes(name)) remove.push(name);
  }
  return { snapshot, snapshotName, log, segments: kept, tornTail, remove, setAside: corrupt };
}

/** Makes the directory match `state`: cuts the torn tail and removes leftovers, durably. */
export function repairDisk(fs: FileSystem, dir: string, state: DiskState): void {
  const torn = state.tornTail;
  if (torn !== null && torn.offset > 0) {
    const fd = fs.openExisting(torn.file);
    try {
      fs.truncate(fd, torn.offset);
      fs.fsync(fd);
    } finally {
      fs.close(fd);
    }
  }
  for (const name of state.remove) fs.unlink(joinPath(dir, name));
  for (const name of state.setAside) fs.rename(joinPath(dir, name), joinPath(dir, `${name}.corrupt`));
  if (state.remove.length > 0 || state.setAside.length > 0) fs.fsyncDir(dir);
}

function readNewestSnapshot(
  fs: FileSystem,
  dir: string,
  names: string[],
): { snapshot: Snapshot | null; snapshotName: string | null; corrupt: string[] } {
  const candidates = names
    .map((name) => ({ name, parsed: parseSnapshotFileName(name) }))
    .filter((s): s is { name: string; parsed: { index: number; term: number } } => s.parsed !== null)
    .sort((a, b) => b.parsed.index - a.parsed.index || b.parsed.term - a.parsed.term);
  const corrupt: string[] = [];
  for (const { name, parsed } of candidates) {
    const decoded = decodeSnapshotFile(fs.readFile(joinPath(dir, name)));
    if ('error' in decoded || decoded.snapshot.meta.index !== parsed.index || decoded.snapshot.meta.term !== parsed.term) {
      // Whether falling back is safe is decided by the log: if it was
      // compacted past the older snapshot, replay.finish() refuses.
      corrupt.push(name);
      continue;
    }
    return { snapshot: decoded.snapshot, snapshotName: name, corrupt };
  }
  return { snapshot: null, snapshotName: null, corrupt };
}

/** Feeds one segment's records to the replay; returns where a torn tail starts, if any. */
function replaySegment(
  replay: LogReplay,
  bytes: Uint8Array,
  path: string,
  isLast: boolean,
  startsRun: boolean,
): { validBytes: number; maxIndex: number; tornAt: TornTail | null } {
  const decoder = new RecordDecoder(bytes);
  let offset = 0;
  let maxIndex = 0;
  for (;;) {
    const result = decoder.decode(offset);
    if (result.status === 'end') return { validBytes: offset, maxIndex, tornAt: null };
    if (result.status === 'invalid') throw new LogCorruptionError(path, offset, result.reason);
    if (result.status === 'bad') {
      if (!isLast) throw new LogCorruptionError(path, offset, `${result.reason} in a segment that is not the last one`);
      const valid = decoder.findValidRecordAfter(offset);
      if (valid >= 0) throw new LogCorruptionError(path, offset, `${result.reason}, but a valid record follows at byte ${valid}`);
      return { validBytes: offset, maxIndex, tornAt: { file: path, offset, droppedBytes: bytes.length - offset, reason: result.reason } };
    }
    const record = result.record;
    try {
      if (offset === 0) {
        if (record.kind !== 'logState' || !record.state.segmentHead) throw new ReplayError('the segment does not start with a head record');
        replay.segmentHead(record.state, startsRun);
      } else if (record.kind === 'entry') {
        replay.entry(record.entry);
        if (record.entry.index > maxIndex) maxIndex = record.entry.index;
      } else if (record.kind === 'hardState') {
        replay.setHardState(record.hardState);
      } else {
        if (record.state.segmentHead) throw new ReplayError('a segment head record in the middle of a segment');
        replay.logState(record.state);
      }
    } catch (error) {
      if (error instanceof ReplayError) throw new LogCorruptionError(path, offset, error.message);
      throw error;
    }
    offset = result.next;
  }
}
