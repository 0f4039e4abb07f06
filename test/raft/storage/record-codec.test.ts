import { describe as group, expect, it } from 'vitest';
import type { Entry, EntryType } from '../../../src/raft/core/types.js';
import { crc32, crc32Table } from '../../../src/raft/storage/checksum.js';
import { RECORD_HEADER_BYTES, RecordDecoder, RecordEncoder, entryRecordBytes } from '../../../src/raft/storage/record-codec.js';
import { decodeSnapshotFile, encodeSnapshotFile, parseSnapshotFileName, snapshotFileName } from '../../../src/raft/storage/snapshot-file.js';
import { entry, seededRandom, snapshot } from './storage-fixtures.js';

function concat(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

group('crc32', () => {
  it('matches the standard check value and the table implementation', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Table(check)).toBe(0xcbf43926);
    const random = seededRandom(7);
    for (let n = 0; n < 50; n++) {
      const bytes = Uint8Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256));
      const split = Math.floor(random() * bytes.length);
      expect(crc32Table(bytes)).toBe(crc32(bytes));
      expect(crc32(bytes.subarray(split), crc32(bytes.subarray(0, split)))).toBe(crc32(bytes));
    }
  });
});

group('record codec', () => {
  it('round-trips entries, hard states and log states', () => {
    const encoder = new RecordEncoder();
    const big: Entry = { index: 2 ** 40 + 3, term: 2 ** 33 + 1, type: 1 as EntryType, data: new Uint8Array(70_000).fill(7) };
    encoder.entry(entry(1, 1));
    encoder.entry(big);
    encoder.entry({ index: 5, term: 2, type: 0, data: new Uint8Array(0) });
    encoder.hardState({ term: 9, vote: 'broker-ü-2', commit: 2 ** 50 });
    encoder.hardState({ term: 0, vote: null, commit: 0 });
    encoder.logState({ snapshotIndex: 10, snapshotTerm: 3, lastIndex: 12, segmentHead: true });
    const bytes = encoder.bytes().slice();
    const decoder = new RecordDecoder(bytes);
    const records = [];
    let offset = 0;
    for (;;) {
      const r = decoder.decode(offset);
      if (r.status === 'end') break;
      expect(r.status).toBe('ok');
      if (r.status !== 'ok') return;
      records.push(r.record);
      offset = r.next;
    }
    expect(records).toEqual([
      { kind: 'entry', entry: entry(1, 1) },
      { kind: 'entry', entry: big },
      { kind: 'entry', entry: { index: 5, term: 2, type: 0, data: new Uint8Array(0) } },
      { kind: 'hardState', hardState: { term: 9, vote: 'broker-ü-2', commit: 2 ** 50 } },
      { kind: 'hardState', hardState: { term: 0, vote: null, commit: 0 } },
      { kind: 'logState', state: { snapshotIndex: 10, snapshotTerm: 3, lastIndex: 12, segmentHead: true } },
    ]);
    expect(entryRecordBytes(entry(1, 1))).toBe(RECORD_HEADER_BYTES + 18 + entry(1, 1).data.length);
  });

  it('reports every single-byte flip and every truncation of a record as bad', () => {
    const encoder = new RecordEncoder();
    encoder.entry(entry(3, 2, 'payload'));
    const pristine = encoder.bytes().slice();
    for (let i = 0; i < pristine.length; i++) {
      const damaged = pristine.slice();
      damaged[i]! ^= 0x40;
      expect(new RecordDecoder(damaged).decode(0).status, `flip at ${i}`).toBe('bad');
      expect(new RecordDecoder(pristine.subarray(0, i)).decode(0).status, `cut at ${i}`).toBe(i === 0 ? 'end' : 'bad');
    }
  });

  it('finds the next valid record after damage, and none in garbage', () => {
    const encoder = new RecordEncoder();
    encoder.entry(entry(1, 1));
    const firstEnd = encoder.length;
    encoder.entry(entry(2, 1));
    const bytes = encoder.bytes().slice();
    bytes[10]! ^= 1;
    const decoder = new RecordDecoder(bytes);
    expect(decoder.decode(0).status).toBe('bad');
    expect(decoder.findValidRecordAfter(0)).toBe(firstEnd);
    const random = seededRandom(3);
    const garbage = Uint8Array.from({ length: 4096 }, () => Math.floor(random() * 256));
    expect(new RecordDecoder(garbage).findValidRecordAfter(0)).toBe(-1);
    expect(new RecordDecoder(new Uint8Array(4096)).findValidRecordAfter(0)).toBe(-1);
  });
});

group('snapshot file', () => {
  it('round-trips and detects damage', () => {
    const snap = snapshot(42, 7, 'the state machine');
    const bytes = concat(encodeSnapshotFile(snap));
    const decoded = decodeSnapshotFile(bytes);
    expect(decoded).toEqual({ snapshot: snap });
    for (let i = 0; i < bytes.length; i++) {
      const damaged = bytes.slice();
      damaged[i]! ^= 0x01;
      expect('error' in decodeSnapshotFile(damaged), `flip at ${i}`).toBe(true);
    }
    expect('error' in decodeSnapshotFile(bytes.subarray(0, bytes.length - 1))).toBe(true);
  });

  it('names sort by index and parse back', () => {
    expect(parseSnapshotFileName(snapshotFileName(300, 5))).toEqual({ index: 300, term: 5 });
    expect(snapshotFileName(9, 1) < snapshotFileName(10, 1)).toBe(true);
    expect(parseSnapshotFileName('snap-1-2.snap')).toBeNull();
  });
});
