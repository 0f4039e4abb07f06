import { describe as group, expect, it } from 'vitest';
import { SimFileSystem, SimulatedCrashError } from '../../../src/raft/storage/sim-file-system.js';
import { seededRandom } from './storage-fixtures.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);
const never = (): number => 0.99;

group('SimFileSystem', () => {
  it('keeps fsynced data and drops unsynced data on a clean crash', () => {
    const fs = new SimFileSystem();
    fs.mkdirp('/d');
    const fd = fs.createFile('/d/a');
    fs.write(fd, bytes('hello '));
    fs.fsync(fd);
    fs.fsyncDir('/d');
    fs.write(fd, bytes('world'));
    expect(text(fs.readFile('/d/a'))).toBe('hello world');
    fs.crash(never);
    expect(text(fs.readFile('/d/a'))).toBe('hello ');
    expect(() => fs.write(fd, bytes('x'))).toThrow(/EBADF/);
  });

  it('loses a created file whose directory was not fsynced, even if its data was', () => {
    const fs = new SimFileSystem();
    fs.mkdirp('/d');
    const fd = fs.createFile('/d/a');
    fs.write(fd, bytes('data'));
    fs.fsync(fd);
    fs.crash(never);
    expect(fs.exists('/d/a')).toBe(false);
  });

  it('brings back an unlinked file and undoes a rename until fsyncDir', () => {
    const fs = new SimFileSystem();
    fs.mkdirp('/d');
    for (const name of ['a', 'b']) {
      const fd = fs.createFile(`/d/${name}`);
      fs.write(fd, bytes(name));
      fs.fsync(fd);
      fs.close(fd);
    }
    fs.fsyncDir('/d');
    fs.unlink('/d/a');
    fs.rename('/d/b', '/d/c');
    expect(fs.readdir('/d')).toEqual(['c']);
    fs.crash(never);
    expect(fs.readdir('/d')).toEqual(['a', 'b']);
    fs.rename('/d/b', '/d/a');
    fs.fsyncDir('/d');
    fs.crash(never);
    expect(fs.readdir('/d')).toEqual(['a']);
    expect(text(fs.readFile('/d/a'))).toBe('b');
  });

  it('torn crashes keep the durable bytes and at most a prefix of the rest, sometimes with garbage at the end', () => {
    const random = seededRandom(11);
    const outcomes = new Set<string>();
    for (let round = 0; round < 300; round++) {
      const fs = new SimFileSystem();
      fs.mkdirp('/d');
      const fd = fs.createFile('/d/a');
      fs.write(fd, bytes('durable|'));
      fs.fsync(fd);
      fs.fsyncDir('/d');
      fs.write(fd, bytes('0123456789'));
      fs.crash(random, { tornWrites: true });
      const after = fs.readFile('/d/a');
      expect(text(after.subarray(0, 8))).toBe('durable|');
      const tail = after.subarray(8);
      const written = bytes('0123456789');
      let agree = 0;
      while (agree < tail.length && agree < written.length && tail[agree] === written[agree]) agree++;
      if (agree === tail.length) outcomes.add(tail.length === 0 ? 'durable only' : 'clean prefix');
      else outcomes.add('garbage at the end');
    }
    expect(outcomes).toEqual(new Set(['durable only', 'clean prefix', 'garbage at the end']));
  });

  it('torn crashes keep a prefix of the queued directory operations, in order', () => {
    const random = seededRandom(5);
    const seen = new Set<string>();
    for (let round = 0; round < 100; round++) {
      const fs = new SimFileSystem();
      fs.mkdirp('/d');
      for (const name of ['1', '2', '3']) fs.close(fs.createFile(`/d/${name}`));
      fs.crash(random, { tornWrites: true });
      const names = fs.readdir('/d').join('');
      expect(['', '1', '12', '123']).toContain(names);
      seen.add(names);
    }
    expect(seen.size).toBe(4);
  });

  it('an armed crash point stops that operation and everything after it', () => {
    const fs = new SimFileSystem();
    fs.mkdirp('/d');
    const fd = fs.createFile('/d/a');
    fs.write(fd, bytes('x'));
    fs.armCrash((op) => op === 'fsync');
    expect(() => fs.fsync(fd)).toThrow(SimulatedCrashError);
    expect(() => fs.write(fd, bytes('y'))).toThrow(SimulatedCrashError);
    fs.crash(never);
    expect(fs.exists('/d/a')).toBe(false);
    const again = fs.createFile('/d/b');
    fs.fsync(again);
  });
});
