// Recovery from damaged files on the real file system (node:fs, a temp dir).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe as group, expect, it } from 'vitest';
import { DiskStorage } from '../../../src/raft/storage/disk-storage.js';
import { entryRecordBytes } from '../../../src/raft/storage/record-codec.js';
import { realFileSystem } from '../../../src/raft/storage/real-file-system.js';
import { LogCorruptionError } from '../../../src/raft/storage/storage-errors.js';
import { describe, entries, entry, makeTempDir, removeDir } from './storage-fixtures.js';

let root = '';
beforeEach(() => {
  root = makeTempDir('recovery');
});
afterEach(() => removeDir(root));

const segments = (dir: string): string[] =>
  fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.seg'))
    .sort();

/** Writes `list` (synced, closed) into `dir` and returns the segment that holds the last record. */
function writeLog(dir: string, list: ReturnType<typeof entries>, segmentBytes?: number): string {
  const storage = DiskStorage.open(realFileSystem, dir, segmentBytes ? { segmentBytes } : {});
  storage.append(list);
  storage.close();
  // open() made one segment; rollovers may have made more. The last one holds the last record.
  return path.join(dir, segments(dir).at(-1)!);
}

function copyDir(from: string, to: string): void {
  fs.rmSync(to, { recursive: true, force: true });
  fs.cpSync(from, to, { recursive: true });
}

group('DiskStorage recovery from damaged files (real node:fs)', () => {
  it('a cut at every byte offset of the last record recovers exactly the complete records before it', () => {
    const pristine = path.join(root, 'pristine');
    const list = [...entries(1, 4, 1), entry(5, 1, 'the last record, cut everywhere')];
    const file = writeLog(pristine, list);
    const fullSize = fs.statSync(file).size;
    const recordSize = entryRecordBytes(list[4]!);
    const start = fullSize - recordSize;
    const work = path.join(root, 'work');
    for (let cut = start; cut <= fullSize; cut++) {
      copyDir(pristine, work);
      fs.truncateSync(path.join(work, path.basename(file)), cut);
      const storage = DiskStorage.open(realFileSystem, work);
      const expected = cut === fullSize ? list : list.slice(0, 4);
      expect(describe(storage.recovered.entries), `cut at ${cut}`).toEqual(describe(expected));
      if (cut === start || cut === fullSize) {
        expect(storage.recovered.tornTail, `cut at ${cut}`).toBeNull();
      } else {
        expect(storage.recovered.tornTail, `cut at ${cut}`).toMatchObject({ offset: start, droppedBytes: cut - start });
      }
      storage.close();
      // The cut is repaired on disk: a second open finds a clean log and the same entries.
      const again = DiskStorage.open(realFileSystem, work);
      expect(again.recovered.tornTail).toBeNull();
      expect(describe(again.recovered.entries)).toEqual(describe(expected));
      again.append([entry(expected.length + 1, 1, 'after repair')]);
      again.close();
      expect(DiskStorage.open(realFileSystem, work).lastIndex).toBe(expected.length + 1);
    }
  });

  it('a flipped byte anywhere in the last record is detected and the record dropped', () => {
    const pristine = path.join(root, 'pristine');
    const list = [...entries(1, 4, 1), entry(5, 1, 'last')];
    const file = writeLog(pristine, list);
    const fullSize = fs.statSync(file).size;
    const start = fullSize - entryRecordBytes(list[4]!);
    const work = path.join(root, 'work');
    for (let at = start; at < fullSize; at++) {
      copyDir(pristine, work);
      const target = path.join(work, path.basename(file));
      const bytes = fs.readFileSync(target);
      bytes[at]! ^= 0x10;
      fs.writeFileSync(target, bytes);
      const storage = DiskStorage.open(realFileSystem, work);
      expect(describe(storage.recovered.entries), `flip at ${at}`).toEqual(describe(list.slice(0, 4)));
      expect(storage.recovered.tornTail?.offset, `flip at ${at}`).toBe(start);
      storage.close();
    }
  });

  it('a bad record followed by good ones is an error, not a truncation', () => {
    const dir = path.join(root, 'log');
    const list = entries(1, 5, 1);
    const file = writeLog(dir, list);
    const bytes = fs.readFileSync(file);
    // Entry 2's data: the record after the head, hard state and entry 1.
    const size = fs.statSync(file).size;
    const entry2At = size - list.slice(1).reduce((n, e) => n + entryRecordBytes(e), 0);
    bytes[entry2At + 8 + 20]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const before = fs.readFileSync(file);
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(LogCorruptionError);
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(/valid record follows/);
    // Nothing was "repaired" away.
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(segments(dir)).toHaveLength(1);
  });

  it('damage in a segment that is not the last is an error, even at its tail', () => {
    const dir = path.join(root, 'log');
    writeLog(dir, entries(1, 30, 1), 120);
    const names = segments(dir);
    expect(names.length).toBeGreaterThan(3);
    const victim = path.join(dir, names[1]!);
    const size = fs.statSync(victim).size;
    fs.truncateSync(victim, size - 1); // a torn tail here would mean a synced segment lost data
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(/not the last one/);
  });

  it('a missing segment in the middle is an error', () => {
    const dir = path.join(root, 'log');
    writeLog(dir, entries(1, 30, 1), 120);
    const names = segments(dir);
    fs.unlinkSync(path.join(dir, names[2]!));
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(LogCorruptionError);
  });

  it('a segment that is not the last and lost whole records at its end is an error', () => {
    const dir = path.join(root, 'log');
    const list = entries(1, 30, 1);
    writeLog(dir, list, 120);
    const names = segments(dir);
    const victim = path.join(dir, names[1]!);
    const size = fs.statSync(victim).size;
    // Every entry of this test has the same record size; cut the last one off cleanly.
    fs.truncateSync(victim, size - entryRecordBytes(list[0]!));
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(/says the log ends at/);
  });

  it('an old segment whose removal was lost while later removals persisted does not break recovery', () => {
    const dir = path.join(root, 'log');
    const storage = DiskStorage.open(realFileSystem, dir, { segmentBytes: 120 });
    storage.append(entries(1, 30, 1));
    storage.saveSnapshot({ meta: { index: 25, term: 1, conf: { voters: ['a'], learners: [] } }, data: new Uint8Array([1]) });
    const oldest = segments(dir)[0]!;
    const saved = fs.readFileSync(path.join(dir, oldest));
    storage.compact(25);
    storage.close();
    expect(segments(dir)).not.toContain(oldest);
    // A file system that reordered the unlinks: the oldest segment is back, the ones after it are gone.
    fs.writeFileSync(path.join(dir, oldest), saved);
    const reopened = DiskStorage.open(realFileSystem, dir, { segmentBytes: 120 });
    expect(describe(reopened.recovered.entries)).toEqual(describe(entries(26, 30, 1)));
    reopened.close();
  });

  it('a corrupt newest snapshot is set aside and the log must then be consistent with the older one', () => {
    const dir = path.join(root, 'log');
    const storage = DiskStorage.open(realFileSystem, dir);
    storage.append(entries(1, 10, 1));
    storage.saveSnapshot({ meta: { index: 4, term: 1, conf: { voters: ['a'], learners: [] } }, data: new Uint8Array([1]) });
    storage.close();
    const snap = fs.readdirSync(dir).find((n) => n.endsWith('.snap'))!;
    const bytes = fs.readFileSync(path.join(dir, snap));
    bytes[bytes.length - 6]! ^= 1;
    fs.writeFileSync(path.join(dir, snap), bytes);
    // The log says a snapshot at 4 exists; without it entries 1..4 are gone for good.
    expect(() => DiskStorage.open(realFileSystem, dir)).toThrow(/newest snapshot file is at 0/);
  });
});
