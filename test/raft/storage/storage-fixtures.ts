// Shared helpers for the storage tests: entries, snapshots, a seeded PRNG,
// and real temporary directories.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Entry, Snapshot } from '../../../src/raft/core/types.js';

/** mulberry32: small, fast, good enough to drive a simulator; same seed, same run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, type: 0, data: new TextEncoder().encode(text) };
}

export function entries(from: number, to: number, term: number, tag = ''): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term, `e${i}t${term}${tag}`));
  return out;
}

export function snapshot(index: number, term: number, text = `state@${index}`): Snapshot {
  return {
    meta: { index, term, conf: { voters: ['a', 'b', 'c'], learners: [] }, addresses: { a: '127.0.0.1:1', b: '127.0.0.1:2', c: '127.0.0.1:3' } },
    data: new TextEncoder().encode(text),
  };
}

/** Entries as comparable plain values (data as text). */
export function describe(list: readonly Entry[]): string[] {
  return list.map((e) => `${e.index}/${e.term}/${e.type}/${new TextDecoder().decode(e.data)}`);
}

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dvote-${prefix}-`));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
