// Simulator configurations derived from the seed, so one number replays a
// whole run: cluster size, spares, fault mix, snapshot frequency, torn writes.
import { RealSimDisk } from './real-sim-disk.js';
import { Rng } from './rng.js';
import type { SimOptions } from './sim-cluster.js';

export function simOptionsForSeed(seed: number): SimOptions {
  const r = new Rng(seed ^ 0x5eed);
  return {
    seed,
    voters: r.chance(0.7) ? 3 : 5,
    spares: r.int(0, 2),
    faultMs: 1000 + r.int(0, 1500),
    quiesceMs: 1500,
    clients: r.int(2, 5),
    keys: r.int(1, 4),
    tornWrites: r.chance(0.8),
    snapshotEvery: r.chance(0.6) ? r.int(5, 40) : 0,
    // Most seeds run the real DiskStorage on a simulated file system; the rest
    // use the small durability model (faster, and an independent oracle).
    ...(r.chance(0.7) ? { makeDisk: (id: string) => new RealSimDisk(id, r.chance(0.5) ? 2048 : 1 << 20) } : {}),
  };
}
