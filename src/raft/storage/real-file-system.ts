// FileSystem on node:fs: the only file in the Raft storage that touches the
// real disk. Synchronous calls (writeSync, fdatasyncSync) keep the storage
// deterministic and simple; fsyncAsync exists so that a host can wait for
// the disk without blocking its event loop.
import fs from 'node:fs';
import type { FileSystem } from './file-system.js';

export const realFileSystem: FileSystem = {
  mkdirp(dir) {
    fs.mkdirSync(dir, { recursive: true });
  },
  readdir(dir) {
    return fs.readdirSync(dir);
  },
  exists(path) {
    return fs.existsSync(path);
  },
  readFile(path) {
    return fs.readFileSync(path);
  },
  size(path) {
    return fs.statSync(path).size;
  },
  createFile(path) {
    // O_APPEND | O_CREAT | O_EXCL: a segment name is never reused.
    return fs.openSync(path, 'ax');
  },
  openWrite(path) {
    return fs.openSync(path, 'w');
  },
  openExisting(path) {
    return fs.openSync(path, 'r+');
  },
  write(fd, data) {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done);
  },
  truncate(fd, length) {
    fs.ftruncateSync(fd, length);
  },
  fsync(fd) {
    fs.fdatasyncSync(fd);
  },
  fsyncAsync(fd) {
    return new Promise<void>((resolve, reject) => {
      fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()));
    });
  },
  close(fd) {
    fs.closeSync(fd);
  },
  rename(from, to) {
    fs.renameSync(from, to);
  },
  unlink(path) {
    fs.unlinkSync(path);
  },
  fsyncDir(dir) {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
};
