// Micro benchmark of the Raft disk storage on the real disk (a temp dir):
// appends per second with one sync per 1, 10 and 100 entries of 100 bytes,
// and the recovery time of what was written. Each case is bounded in time.
//
//   npx tsx bench/raft-storage.ts [seconds-per-case]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Entry } from '../src/raft/core/types.js';
import { DiskStorage } from '../src/raft/storage/disk-storage.js';
import { realFileSystem } from '../src/raft/storage/real-file-system.js';

const secondsPerCase = Number(process.argv[2] ?? 1.5);
const DATA_BYTES = 100;

interface Result {
  case: string;
  entries: number;
  syncs: number;
  seconds: number;
  appendsPerSec: number;
  syncsPerSec: number;
}

async function runCase(name: string, batch: number, mode: 'sync' | 'syncAsync'): Promise<Result> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dvote-bench-storage-'));
  try {
    const storage = DiskStorage.open(realFileSystem, path.join(dir, 'raft'));
    const data = new Uint8Array(DATA_BYTES).fill(0x61);
    let index = 0;
    let syncs = 0;
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(Math.round(secondsPerCase * 1e9));
    const list: Entry[] = new Array<Entry>(batch);
    while (process.hrtime.bigint() < deadline) {
      for (let i = 0; i < batch; i++) list[i] = { index: ++index, term: 1, type: 0, data };
      storage.append(list);
      storage.setHardState({ term: 1, vote: 'n1', commit: index });
      if (mode === 'sync') storage.sync();
      else await storage.syncAsync();
      syncs++;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    storage.close();

    const recoverStart = process.hrtime.bigint();
    const reopened = DiskStorage.open(realFileSystem, path.join(dir, 'raft'));
    const recoverMs = Number(process.hrtime.bigint() - recoverStart) / 1e6;
    if (reopened.recovered.entries.length !== index) throw new Error(`recovered ${reopened.recovered.entries.length} of ${index} entries`);
    reopened.close();
    console.log(
      `${name.padEnd(34)} ${String(Math.round(index / seconds)).padStart(8)} appends/s  ` +
        `${String(Math.round(syncs / seconds)).padStart(6)} syncs/s  (${index} entries; recovery ${recoverMs.toFixed(0)} ms)`,
    );
    return { case: name, entries: index, syncs, seconds, appendsPerSec: index / seconds, syncsPerSec: syncs / seconds };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The disk's own ceiling: append a record-sized buffer and fdatasync, nothing else. */
function rawFdatasyncPerSec(): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dvote-bench-fsync-'));
  try {
    const fd = fs.openSync(path.join(dir, 'raw'), 'a');
    const record = Buffer.alloc(DATA_BYTES + 26, 0x61);
    let count = 0;
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(Math.round(secondsPerCase * 1e9));
    while (process.hrtime.bigint() < deadline) {
      fs.writeSync(fd, record);
      fs.fdatasyncSync(fd);
      count++;
    }
    fs.closeSync(fd);
    return count / (Number(process.hrtime.bigint() - started) / 1e9);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`raft storage bench: ${DATA_BYTES}-byte entries, ${secondsPerCase}s per case, dir ${os.tmpdir()}`);
  console.log(`${'baseline: raw write+fdatasync'.padEnd(34)} ${String(Math.round(rawFdatasyncPerSec())).padStart(8)} per s (the disk's ceiling for 1 entry per sync)`);
  await runCase('1 entry per sync()', 1, 'sync');
  await runCase('1 entry per syncAsync()', 1, 'syncAsync');
  await runCase('10 entries per sync()', 10, 'sync');
  await runCase('100 entries per sync()', 100, 'sync');
  await runCase('100 entries per syncAsync()', 100, 'syncAsync');
}

await main();
