// The part of a file system the Raft storage needs, synchronous so that a
// deterministic simulator can drive the storage step by step. Two
// implementations: realFileSystem (node:fs, real-file-system.ts) and
// SimFileSystem (in memory, models what survives a power cut).
//
// Durability contract, the one Linux gives and the simulator enforces:
// - bytes written to a file are volatile until fsync(fd) of that file;
// - creating, renaming or unlinking a name is volatile until fsyncDir() of
//   the directory that holds the name.

export interface FileSystem {
  /** Creates the directory and its missing parents. */
  mkdirp(dir: string): void;
  /** Names (not paths) of the entries of a directory. */
  readdir(dir: string): string[];
  exists(path: string): boolean;
  /** The whole content of a file as the page cache sees it (durable or not). */
  readFile(path: string): Uint8Array;
  /** Size in bytes of a file. */
  size(path: string): number;
  /** Creates a new file for appending; fails if the name exists. */
  createFile(path: string): number;
  /** Creates or empties a file for writing from its start. */
  openWrite(path: string): number;
  /** Opens an existing file for writing (used to truncate it). */
  openExisting(path: string): number;
  /**
   * Writes all of `data` after what this descriptor wrote before (callers
   * write every file front to back; no positional writes are needed).
   */
  write(fd: number, data: Uint8Array): void;
  /** Cuts the file to `length` bytes. */
  truncate(fd: number, length: number): void;
  /** fdatasync: the file's data and size are durable when it returns. */
  fsync(fd: number): void;
  /** fsync without blocking the event loop (real: fs.fdatasync in the thread pool). */
  fsyncAsync(fd: number): Promise<void>;
  close(fd: number): void;
  /** Atomically replaces `to` with `from` (same directory). */
  rename(from: string, to: string): void;
  unlink(path: string): void;
  /** Makes the directory's entries (creates, renames, unlinks) durable. */
  fsyncDir(dir: string): void;
}

/** The directory part of a slash-separated path ("/a/b/c" -> "/a/b"). */
export function parentDir(path: string): string {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const slash = trimmed.lastIndexOf('/');
  if (slash < 0) return '.';
  if (slash === 0) return '/';
  return trimmed.slice(0, slash);
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}
