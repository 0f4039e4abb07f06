import { afterEach, describe as group, expect, it } from 'vitest';
import { DiskStorage } from '../../../src/raft/storage/disk-storage.js';
import type { FileSystem } from '../../../src/raft/storage/file-system.js';
import { realFileSystem } from '../../../src/raft/storage/real-file-system.js';
import { SimFileSystem, SimulatedCrashError } from '../../../src/raft/storage/sim-file-system.js';
import { StorageFailedError } from '../../../src/raft/storage/storage-errors.js';
import { describe, entries, makeTempDir, removeDir, snapshot } from './storage-fixtures.js';

interface Backend {
  name: string;
  make(): { fs: FileSystem; dir: string };
}

const tempDirs: string[] = [];
afterEach(() => {
  for (const dir of tempDirs.splice(0)) removeDir(dir);
});

const backends: Backend[] = [
  { name: 'SimFileSystem', make: () => ({ fs: new SimFileSystem(), dir: '/data/raft' }) },
  {
    name: 'real node:fs',
    make: () => {
      const root = makeTempDir('storage');
      tempDirs.push(root);
      return { fs: realFileSystem, dir: `${root}/raft` };
    },
  },
];

const segmentFiles = (fs: FileSystem, dir: string): string[] => fs.readdir(dir).filter((n) => n.endsWith('.seg'));
const snapshotFiles = (fs: FileSystem, dir: string): string[] => fs.readdir(dir).filter((n) => n.includes('.snap'));

for (const backend of backends) {
  group(`DiskStorage on ${backend.name}`, () => {
    it('starts empty', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir);
      expect(storage.recovered).toEqual({ hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [], tornTail: null });
      expect(storage.lastIndex).toBe(0);
      storage.close();
    });

    it('round-trips entries and the hard state', async () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir);
      storage.append(entries(1, 5, 1));
      storage.setHardState({ term: 1, vote: 'n1', commit: 3 });
      storage.append(entries(6, 10, 2));
      await storage.syncAsync();
      storage.setHardState({ term: 2, vote: null, commit: 9 });
      storage.close();

      const reopened = DiskStorage.open(fs, dir);
      expect(describe(reopened.recovered.entries)).toEqual(describe([...entries(1, 5, 1), ...entries(6, 10, 2)]));
      expect(reopened.recovered.hardState).toEqual({ term: 2, vote: null, commit: 9 });
      expect(reopened.recovered.entries[9]!.data).toBeInstanceOf(Uint8Array);
      expect(reopened.lastIndex).toBe(10);
      reopened.append(entries(11, 12, 2));
      reopened.close();
      expect(describe(DiskStorage.open(fs, dir).recovered.entries)).toHaveLength(12);
    });

    it('rolls over across many tiny segments and reads them all back', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir, { segmentBytes: 120 });
      const all = entries(1, 300, 1);
      let at = 0;
      for (const size of [1, 7, 2, 50, 3, 100, 1, 136]) {
        storage.append(all.slice(at, at + size));
        at += size;
        storage.sync();
      }
      expect(at).toBe(300);
      storage.close();
      const files = segmentFiles(fs, dir);
      expect(files.length).toBeGreaterThan(50);
      for (const name of files) expect(fs.size(`${dir}/${name}`)).toBeLessThanOrEqual(120 + 60);
      const reopened = DiskStorage.open(fs, dir, { segmentBytes: 120 });
      expect(describe(reopened.recovered.entries)).toEqual(describe(all));
      reopened.close();
    });

    it('overwrites a suffix across segment boundaries', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir, { segmentBytes: 100 });
      storage.append(entries(1, 40, 1));
      storage.sync();
      storage.append(entries(12, 20, 2));
      storage.sync();
      expect(storage.lastIndex).toBe(20);
      storage.close();
      let reopened = DiskStorage.open(fs, dir, { segmentBytes: 100 });
      expect(describe(reopened.recovered.entries)).toEqual(describe([...entries(1, 11, 1), ...entries(12, 20, 2)]));
      // Overwrite again, further back, then extend: only the latest version of each index survives.
      reopened.append(entries(5, 8, 3));
      reopened.append(entries(9, 9, 3));
      reopened.close();
      reopened = DiskStorage.open(fs, dir, { segmentBytes: 100 });
      expect(describe(reopened.recovered.entries)).toEqual(describe([...entries(1, 4, 1), ...entries(5, 9, 3)]));
      reopened.close();
    });

    it('saves snapshots, keeps the log after a matching one, and compacts whole segments', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir, { segmentBytes: 150 });
      storage.append(entries(1, 40, 1));
      storage.saveSnapshot(snapshot(30, 1));
      expect(storage.lastIndex).toBe(40);
      expect(() => storage.compact(31)).toThrow(/snapshot is at 30/);
      const before = segmentFiles(fs, dir).length;
      storage.compact(30);
      const after = segmentFiles(fs, dir).length;
      expect(after).toBeLessThan(before);
      storage.append(entries(41, 45, 2));
      storage.saveSnapshot(snapshot(42, 2));
      expect(snapshotFiles(fs, dir)).toEqual(['snap-000000000000002a-0000000000000002.snap']);
      storage.compact(42);
      storage.close();

      const reopened = DiskStorage.open(fs, dir, { segmentBytes: 150 });
      expect(reopened.recovered.snapshot).toEqual(snapshot(42, 2));
      expect(describe(reopened.recovered.entries)).toEqual(describe(entries(43, 45, 2)));
      expect(reopened.recovered.hardState.commit).toBe(42); // a snapshot is committed by definition
      reopened.close();
    });

    it('a snapshot that does not match the log replaces it (Raft §7)', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir);
      storage.append(entries(1, 20, 1));
      storage.saveSnapshot(snapshot(25, 3));
      expect(storage.lastIndex).toBe(25);
      storage.append(entries(21, 25, 3)); // covered by the snapshot: skipped
      expect(storage.lastIndex).toBe(25);
      storage.append(entries(24, 27, 3)); // the covered part is skipped, the rest appended
      expect(storage.lastIndex).toBe(27);
      storage.close();
      let reopened = DiskStorage.open(fs, dir);
      expect(describe(reopened.recovered.entries)).toEqual(describe(entries(26, 27, 3)));
      // Index inside the log but with another term: also replaces it.
      reopened.saveSnapshot(snapshot(27, 4));
      reopened.close();
      reopened = DiskStorage.open(fs, dir);
      expect(reopened.recovered.entries).toEqual([]);
      expect(reopened.recovered.snapshot?.meta.index).toBe(27);
      reopened.saveSnapshot(snapshot(20, 1)); // older than the saved one: ignored
      expect(reopened.snapshotIndex).toBe(27);
      reopened.close();
    });

    it('rejects appends that would leave a gap, go backwards in term, or are not contiguous', () => {
      const { fs, dir } = backend.make();
      const storage = DiskStorage.open(fs, dir);
      storage.append(entries(1, 3, 2));
      expect(() => storage.append(entries(5, 6, 2))).toThrow(/log ends at 3/);
      expect(() => storage.append(entries(4, 4, 1))).toThrow(/term 1, below 2/);
      expect(() => storage.append([...entries(4, 4, 2), ...entries(6, 6, 2)])).toThrow(/not contiguous/);
      expect(() => storage.saveSnapshot(snapshot(0, 1))).toThrow(/contradicts the saved one/);
      // Argument errors do not poison the storage.
      storage.append(entries(4, 4, 2));
      storage.close();
      expect(DiskStorage.open(fs, dir).lastIndex).toBe(4);
    });
  });
}

group('DiskStorage durability on SimFileSystem', () => {
  const never = (): number => 0.99;

  it('everything is durable after sync(), new segment files included', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d', { segmentBytes: 100 });
    storage.append(entries(1, 30, 1));
    storage.setHardState({ term: 1, vote: 'a', commit: 30 });
    storage.sync();
    fs.crash(never);
    const reopened = DiskStorage.open(fs, '/d', { segmentBytes: 100 });
    expect(describe(reopened.recovered.entries)).toEqual(describe(entries(1, 30, 1)));
    expect(reopened.recovered.hardState).toEqual({ term: 1, vote: 'a', commit: 30 });
  });

  it('without sync() a clean crash loses the unsynced appends and hard state', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d', { segmentBytes: 100 });
    storage.append(entries(1, 3, 1));
    storage.sync();
    storage.append(entries(4, 30, 1));
    storage.setHardState({ term: 1, vote: 'a', commit: 30 });
    fs.crash(never);
    const reopened = DiskStorage.open(fs, '/d', { segmentBytes: 100 });
    expect(describe(reopened.recovered.entries)).toEqual(describe(entries(1, 3, 1)));
    expect(reopened.recovered.hardState).toEqual({ term: 0, vote: null, commit: 0 });
  });

  it('an overwrite that was synced is never undone by a crash', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d', { segmentBytes: 90 });
    storage.append(entries(1, 20, 1));
    storage.sync();
    storage.append(entries(5, 6, 2));
    storage.sync();
    fs.crash(never);
    const reopened = DiskStorage.open(fs, '/d', { segmentBytes: 90 });
    expect(describe(reopened.recovered.entries)).toEqual(describe([...entries(1, 4, 1), ...entries(5, 6, 2)]));
  });

  it('sync() with nothing new does not touch the disk', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d');
    storage.append(entries(1, 1, 1));
    storage.sync();
    const flushes = fs.syncCount;
    storage.sync();
    storage.setHardState({ term: 0, vote: null, commit: 0 });
    storage.sync();
    expect(fs.syncCount).toBe(flushes);
    storage.setHardState({ term: 0, vote: null, commit: 1 });
    storage.sync();
    expect(fs.syncCount).toBe(flushes + 1);
  });

  it('a failed fsync poisons the storage; reopening recovers what is on disk', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d');
    storage.append(entries(1, 2, 1));
    storage.sync();
    storage.append(entries(3, 4, 1));
    fs.armCrash((op) => op === 'fsync');
    expect(() => storage.sync()).toThrow(SimulatedCrashError);
    expect(() => storage.append(entries(5, 5, 1))).toThrow(StorageFailedError);
    fs.crash(never);
    storage.close(); // its descriptors died with the crash; closing must not throw
    expect(describe(DiskStorage.open(fs, '/d').recovered.entries)).toEqual(describe(entries(1, 2, 1)));
  });

  it('snapshot atomicity: a crash between writing the temp file and the rename leaves the old snapshot', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d');
    storage.append(entries(1, 10, 1));
    storage.saveSnapshot(snapshot(5, 1, 'old'));
    fs.armCrash((op, path) => op === 'rename' && path.endsWith('.snap.tmp'));
    expect(() => storage.saveSnapshot(snapshot(8, 1, 'new'))).toThrow(SimulatedCrashError);
    // The temp file is complete and fsynced; only the rename is missing.
    expect(fs.readdir('/d').some((n) => n.endsWith('.tmp'))).toBe(true);
    fs.crash(never);
    const reopened = DiskStorage.open(fs, '/d');
    expect(reopened.recovered.snapshot).toEqual(snapshot(5, 1, 'old'));
    expect(describe(reopened.recovered.entries)).toEqual(describe(entries(6, 10, 1)));
    expect(fs.readdir('/d').filter((n) => n.includes('snap'))).toEqual(['snap-0000000000000005-0000000000000001.snap']);
  });

  it('a crash after the snapshot rename but before the log records it still applies the snapshot rule', () => {
    for (const [snap, expected] of [
      [snapshot(8, 1), describe(entries(9, 10, 1))], // matches the log: keep what follows
      [snapshot(8, 5), []], // does not match: the snapshot replaces the log
    ] as const) {
      const fs = new SimFileSystem();
      const storage = DiskStorage.open(fs, '/d');
      storage.append(entries(1, 10, 1));
      let fsyncsAfterRename = 0;
      let renamed = false;
      fs.armCrash((op, path) => {
        if (op === 'rename' && path.endsWith('.snap.tmp')) renamed = true;
        if (renamed && op === 'fsync') fsyncsAfterRename++;
        return fsyncsAfterRename === 1; // the fsync of the log record
      });
      expect(() => storage.saveSnapshot(snap)).toThrow(SimulatedCrashError);
      fs.crash(never);
      const reopened = DiskStorage.open(fs, '/d');
      expect(reopened.recovered.snapshot?.meta).toEqual(snap.meta);
      expect(describe(reopened.recovered.entries)).toEqual(expected);
      reopened.close();
      expect(describe(DiskStorage.open(fs, '/d').recovered.entries)).toEqual(expected);
    }
  });

  it('compaction that a crash half-undid still recovers', () => {
    const fs = new SimFileSystem();
    const storage = DiskStorage.open(fs, '/d', { segmentBytes: 80 });
    storage.append(entries(1, 30, 1));
    storage.saveSnapshot(snapshot(25, 1));
    const before = fs.readdir('/d').filter((n) => n.endsWith('.seg'));
    storage.compact(25);
    // No sync: the unlinks are lost in the crash.
    fs.crash(never);
    expect(fs.readdir('/d').filter((n) => n.endsWith('.seg'))).toEqual(before);
    const reopened = DiskStorage.open(fs, '/d', { segmentBytes: 80 });
    expect(describe(reopened.recovered.entries)).toEqual(describe(entries(26, 30, 1)));
  });

  it('syncAsync survives a rollover while its fsync is in flight', async () => {
    const fs = new SimFileSystem();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const realFsyncAsync = fs.fsyncAsync.bind(fs);
    fs.fsyncAsync = async (fd: number) => {
      await gate;
      return realFsyncAsync(fd);
    };
    const storage = DiskStorage.open(fs, '/d', { segmentBytes: 100 });
    storage.append(entries(1, 2, 1));
    const pending = storage.syncAsync();
    storage.append(entries(3, 20, 1)); // rolls over, retiring the segment being flushed
    release();
    await pending;
    storage.close();
    fs.crash(never);
    expect(describe(DiskStorage.open(fs, '/d').recovered.entries)).toEqual(describe(entries(1, 20, 1)));
  });
});
