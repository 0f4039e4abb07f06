// The real DiskStorage (segments, checksums, recovery) running on the
// simulated file system, so simulator crashes exercise the real recovery
// code: unsynced bytes vanish, and with torn writes a random prefix of them
// (and of pending directory changes) survives.
import { DiskStorage } from '../../../src/raft/storage/disk-storage.js';
import { SimFileSystem } from '../../../src/raft/storage/sim-file-system.js';
import type { Entry, HardState, Snapshot } from '../../../src/raft/core/types.js';
import type { Rng } from './rng.js';
import type { Recovered, SimDisk } from './sim-disk.js';

export class RealSimDisk implements SimDisk {
  private readonly fs = new SimFileSystem();
  private readonly dir: string;
  private storage: DiskStorage;
  private crashed = false;

  constructor(id: string, private readonly segmentBytes = 4096) {
    this.dir = `/data/${id}`;
    this.storage = DiskStorage.open(this.fs, this.dir, { segmentBytes });
  }

  append(entries: Entry[]): void {
    this.storage.append(entries);
  }

  setHardState(hs: HardState): void {
    this.storage.setHardState(hs);
  }

  saveSnapshot(s: Snapshot): void {
    this.storage.saveSnapshot(s);
  }

  compact(upTo: number): void {
    this.storage.compact(upTo);
  }

  sync(): void {
    this.storage.sync();
  }

  crash(rng: Rng, tornWrites: boolean): void {
    this.crashed = true;
    this.fs.crash(() => rng.next(), { tornWrites });
  }

  recover(): Recovered {
    if (!this.crashed) this.storage.close();
    this.crashed = false;
    this.storage = DiskStorage.open(this.fs, this.dir, { segmentBytes: this.segmentBytes });
    const r = this.storage.recovered;
    const out: Recovered = {
      hardState: { ...r.hardState },
      snapshot: r.snapshot,
      entries: r.entries.map((e) => ({ ...e, data: e.data.slice() })),
    };
    this.storage.releaseRecovered();
    return out;
  }
}
