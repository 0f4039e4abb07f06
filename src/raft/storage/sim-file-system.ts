// An in-memory FileSystem that models what a power cut leaves behind, so that
// crash tests can run thousands of crashes deterministically.
//
// Model (the guarantees Linux gives, no more):
// - every file has a page-cache content and a durable content; fsync(fd)
//   copies the first to the second;
// - every directory has a live name table and a durable one; creates,
//   renames and unlinks change the live table and are queued; fsyncDir()
//   makes the queue durable;
// - crash() throws away everything volatile. With tornWrites the crash is
//   less tidy: a random prefix of each directory's queued operations survives
//   (a journal commits metadata in order), and each file may keep a random
//   prefix of its unsynced bytes, possibly ending in garbage (a sector that
//   was being written). Durable bytes are never damaged.
// Directories themselves are durable as soon as mkdirp creates them (the
// storage creates its directory once; modelling that is not worth it).

import { parentDir } from './file-system.js';
import type { FileSystem } from './file-system.js';

/** Thrown by an operation that an armed crash point stopped; the "process" is dead until crash(). */
export class SimulatedCrashError extends Error {
  constructor(op: SimFileOp, path: string) {
    super(`simulated crash before ${op} ${path}`);
    this.name = 'SimulatedCrashError';
  }
}

export type SimFileOp = 'create' | 'write' | 'truncate' | 'fsync' | 'rename' | 'unlink' | 'fsyncDir';

interface Inode {
  data: Uint8Array;
  length: number;
  durable: Uint8Array;
}

type DirOp =
  | { kind: 'link'; name: string; inode: Inode }
  | { kind: 'unlink'; name: string }
  | { kind: 'rename'; from: string; to: string; inode: Inode };

interface Dir {
  live: Map<string, Inode>;
  durable: Map<string, Inode>;
  pending: DirOp[];
}

interface OpenFile {
  inode: Inode;
  path: string;
}

export interface CrashOptions {
  /** Let random prefixes of unsynced data and of queued directory operations survive. */
  tornWrites?: boolean;
}

const CANONICAL_PATH = /^(\/[^/]+)+$/;

function normalize(path: string): string {
  if (CANONICAL_PATH.test(path) && !path.includes('/./') && !path.endsWith('/.')) return path;
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  return `/${parts.join('/')}`;
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function errnoError(code: string, message: string): Error {
  const error = new Error(`${code}: ${message}`) as Error & { code: string };
  error.code = code;
  return error;
}

export class SimFileSystem implements FileSystem {
  private readonly dirs = new Map<string, Dir>([['/', { live: new Map(), durable: new Map(), pending: [] }]]);
  private readonly files = new Map<number, OpenFile>();
  private nextFd = 3;
  private crashPoint: ((op: SimFileOp, path: string) => boolean) | null = null;
  private dead = false;
  /** Number of fsync and fsyncDir calls, for tests that count disk flushes. */
  syncCount = 0;

  /**
   * Arms a crash point: the first mutating operation for which `when`
   * returns true throws SimulatedCrashError instead of running, and so does
   * every operation after it, until crash() is called.
   */
  armCrash(when: (op: SimFileOp, path: string) => boolean): void {
    this.crashPoint = when;
  }

  disarmCrash(): void {
    this.crashPoint = null;
  }

  /** Power cut: keeps only what was durable (see the model above). All descriptors become invalid. */
  crash(random: () => number, opts: CrashOptions = {}): void {
    const torn = opts.tornWrites === true;
    const survivors = new Set<Inode>();
    for (const dir of this.dirs.values()) {
      const table = new Map(dir.durable);
      if (torn) {
        const keep = Math.floor(random() * (dir.pending.length + 1));
        for (const op of dir.pending.slice(0, keep)) applyDirOp(table, op);
      }
      dir.live = table;
      dir.durable = new Map(table);
      dir.pending = [];
      for (const inode of table.values()) survivors.add(inode);
    }
    for (const inode of survivors) {
      const content = torn ? tornContent(inode, random) : inode.durable.slice();
      inode.data = content;
      inode.length = content.length;
      inode.durable = content.slice();
    }
    this.files.clear();
    this.crashPoint = null;
    this.dead = false;
  }

  /** The bytes that would survive a crash without torn writes (for tests). */
  durableContent(path: string): Uint8Array | null {
    const p = normalize(path);
    const dir = this.dirs.get(parentDir(p));
    const inode = dir?.durable.get(baseName(p));
    return inode ? inode.durable.slice() : null;
  }

  /** Test helper: replaces a file's content, live and durable (to model media corruption). */
  overwriteDurable(path: string, content: Uint8Array): void {
    const inode = this.lookup(path);
    inode.data = content.slice();
    inode.length = content.length;
    inode.durable = content.slice();
  }

  mkdirp(dir: string): void {
    const p = normalize(dir);
    if (p === '/') return;
    this.mkdirp(parentDir(p));
    if (!this.dirs.has(p)) {
      const parent = this.dirs.get(parentDir(p))!;
      if (parent.live.has(baseName(p))) throw errnoError('EEXIST', `${p} is a file`);
      this.dirs.set(p, { live: new Map(), durable: new Map(), pending: [] });
    }
  }

  readdir(dir: string): string[] {
    const p = normalize(dir);
    const d = this.dirs.get(p);
    if (!d) throw errnoError('ENOENT', `no such directory ${p}`);
    const names = [...d.live.keys()];
    for (const other of this.dirs.keys()) {
      if (other !== p && other !== '/' && parentDir(other) === p) names.push(baseName(other));
    }
    return names.sort();
  }

  exists(path: string): boolean {
    const p = normalize(path);
    if (this.dirs.has(p)) return true;
    return this.dirs.get(parentDir(p))?.live.has(baseName(p)) ?? false;
  }

  readFile(path: string): Uint8Array {
    const inode = this.lookup(path);
    return inode.data.slice(0, inode.length);
  }

  size(path: string): number {
    return this.lookup(path).length;
  }

  createFile(path: string): number {
    const p = normalize(path);
    this.check('create', p);
    const dir = this.dirOf(p);
    if (dir.live.has(baseName(p))) throw errnoError('EEXIST', `${p} exists`);
    return this.openNew(dir, p);
  }

  openWrite(path: string): number {
    const p = normalize(path);
    this.check('create', p);
    const dir = this.dirOf(p);
    const existing = dir.live.get(baseName(p));
    if (!existing) return this.openNew(dir, p);
    existing.length = 0;
    return this.register(existing, p);
  }

  openExisting(path: string): number {
    const p = normalize(path);
    return this.register(this.lookup(p), p);
  }

  write(fd: number, data: Uint8Array): void {
    const file = this.fileOf(fd);
    this.check('write', file.path);
    const inode = file.inode;
    const needed = inode.length + data.length;
    if (needed > inode.data.length) {
      const grown = new Uint8Array(Math.max(needed, inode.data.length * 2, 256));
      grown.set(inode.data.subarray(0, inode.length));
      inode.data = grown;
    }
    inode.data.set(data, inode.length);
    inode.length = needed;
  }

  truncate(fd: number, length: number): void {
    const file = this.fileOf(fd);
    this.check('truncate', file.path);
    const inode = file.inode;
    if (length < inode.length) {
      inode.length = length;
    } else if (length > inode.length) {
      this.write(fd, new Uint8Array(length - inode.length));
    }
  }

  fsync(fd: number): void {
    const file = this.fileOf(fd);
    this.check('fsync', file.path);
    file.inode.durable = file.inode.data.slice(0, file.inode.length);
    this.syncCount++;
  }

  fsyncAsync(fd: number): Promise<void> {
    try {
      this.fsync(fd);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  close(fd: number): void {
    this.fileOf(fd);
    this.files.delete(fd);
  }

  rename(from: string, to: string): void {
    const f = normalize(from);
    const t = normalize(to);
    if (parentDir(f) !== parentDir(t)) throw new Error('SimFileSystem models renames inside one directory only');
    this.check('rename', f);
    const dir = this.dirOf(f);
    const inode = dir.live.get(baseName(f));
    if (!inode) throw errnoError('ENOENT', `no such file ${f}`);
    const op: DirOp = { kind: 'rename', from: baseName(f), to: baseName(t), inode };
    applyDirOp(dir.live, op);
    dir.pending.push(op);
  }

  unlink(path: string): void {
    const p = normalize(path);
    this.check('unlink', p);
    const dir = this.dirOf(p);
    if (!dir.live.has(baseName(p))) throw errnoError('ENOENT', `no such file ${p}`);
    const op: DirOp = { kind: 'unlink', name: baseName(p) };
    applyDirOp(dir.live, op);
    dir.pending.push(op);
  }

  fsyncDir(dir: string): void {
    const p = normalize(dir);
    this.check('fsyncDir', p);
    const d = this.dirs.get(p);
    if (!d) throw errnoError('ENOENT', `no such directory ${p}`);
    d.durable = new Map(d.live);
    d.pending = [];
    this.syncCount++;
  }

  private check(op: SimFileOp, path: string): void {
    if (this.dead || (this.crashPoint !== null && this.crashPoint(op, path))) {
      this.dead = true;
      throw new SimulatedCrashError(op, path);
    }
  }

  private openNew(dir: Dir, path: string): number {
    const inode: Inode = { data: new Uint8Array(0), length: 0, durable: new Uint8Array(0) };
    const op: DirOp = { kind: 'link', name: baseName(path), inode };
    applyDirOp(dir.live, op);
    dir.pending.push(op);
    return this.register(inode, path);
  }

  private register(inode: Inode, path: string): number {
    const fd = this.nextFd++;
    this.files.set(fd, { inode, path });
    return fd;
  }

  private dirOf(path: string): Dir {
    const dir = this.dirs.get(parentDir(path));
    if (!dir) throw errnoError('ENOENT', `no such directory ${parentDir(path)}`);
    return dir;
  }

  private lookup(path: string): Inode {
    const p = normalize(path);
    const inode = this.dirs.get(parentDir(p))?.live.get(baseName(p));
    if (!inode) throw errnoError('ENOENT', `no such file ${p}`);
    return inode;
  }

  private fileOf(fd: number): OpenFile {
    const file = this.files.get(fd);
    if (!file) throw errnoError('EBADF', `bad file descriptor ${fd}`);
    return file;
  }
}

function applyDirOp(table: Map<string, Inode>, op: DirOp): void {
  switch (op.kind) {
    case 'link':
      table.set(op.name, op.inode);
      break;
    case 'unlink':
      table.delete(op.name);
      break;
    case 'rename':
      table.delete(op.from);
      table.set(op.to, op.inode);
      break;
  }
}

/**
 * What a torn crash leaves of one file: half the time exactly the durable
 * content, otherwise the durable bytes the page cache still agrees with plus
 * a random prefix of the rest, sometimes ending in a damaged or stray sector.
 */
function tornContent(inode: Inode, random: () => number): Uint8Array {
  const durable = inode.durable;
  const live = inode.data.subarray(0, inode.length);
  if (random() < 0.5) return durable.slice();
  let common = 0;
  const limit = Math.min(durable.length, live.length);
  while (common < limit && durable[common] === live[common]) common++;
  if (common === live.length && live.length === durable.length) return durable.slice();
  const keep = common + Math.floor(random() * (live.length - common + 1));
  let content = live.slice(0, keep);
  const garbage = random();
  if (garbage < 0.2 && keep > common) {
    // The last sector in flight was half written.
    const span = 1 + Math.floor(random() * Math.min(keep - common, 16));
    for (let i = keep - span; i < keep; i++) content[i] = random() < 0.5 ? 0 : Math.floor(random() * 256);
  } else if (garbage < 0.35 && live.length > common) {
    // The file grew but the data never reached the platter: zeros or junk.
    const extra = new Uint8Array(1 + Math.floor(random() * 32));
    if (random() < 0.5) for (let i = 0; i < extra.length; i++) extra[i] = Math.floor(random() * 256);
    const grown = new Uint8Array(content.length + extra.length);
    grown.set(content);
    grown.set(extra, content.length);
    content = grown;
  }
  return content;
}
