// Which shard holds a voter. Pure and stable across versions: the same voter
// id maps to the same slot forever, because every copy of a shard (and every
// client) must agree on it.
//
// voter id -> slot -> shard, with the slot function chosen by the map's kind:
//
//   hash        1024 slots. slot = top 10 bits of a 32-bit hash of the 64-bit id:
//                 hi = floor(id / 2^32), lo = id mod 2^32
//                 h  = fmix32(lo XOR fmix32(hi XOR 0x9e3779b9))
//                 slot = h >>> 22                      (0..1023)
//               where fmix32 is MurmurHash3's finalizer:
//                 h ^= h >>> 16; h *= 0x85ebca6b; h ^= h >>> 13; h *= 0xc2b2ae35; h ^= h >>> 16
//               (all arithmetic mod 2^32). Slots are split into S contiguous
//               ranges: shard = floor(slot * S / 1024) + 1, so shard s owns
//               slots ceil((s-1)*1024/S) .. ceil(s*1024/S)-1.
//   parity      the original DisVote rule, 2 slots: slot = id mod 2,
//               shard = slot + 1 (even ids -> shard 1, odd ids -> shard 2).
//   last-digit  the report's ten-shard proposal, 10 slots: slot = id mod 10,
//               shard = slot + 1 (last digit d -> shard d+1).
//
// The managers store the map (/dvote/shardmap) as slot ranges, so that moving
// slots between shards later is a change of data, not of code.
import type { ShardMapKind } from './topology.js';

export const HASH_SLOTS = 1024;
export const SHARD_MAP_VERSION = 1;

export interface SlotRange {
  /** First slot of the range (inclusive). */
  first: number;
  /** Last slot of the range (inclusive). */
  last: number;
  shard: number;
}

/** The shard map as the managers store it at /dvote/shardmap. */
export interface ShardMap {
  version: typeof SHARD_MAP_VERSION;
  kind: ShardMapKind;
  /** Number of slots of the kind's slot function (1024, 2 or 10). */
  slots: number;
  shards: number;
  ranges: SlotRange[];
}

/** MurmurHash3's 32-bit finalizer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The 1024-slot hash of a voter id (an integer 0 <= id <= 2^53 - 1). */
export function hashSlot(voterId: number): number {
  const hi = Math.floor(voterId / 0x1_0000_0000);
  const lo = voterId >>> 0;
  const h = fmix32((lo ^ fmix32((hi ^ 0x9e3779b9) >>> 0)) >>> 0);
  return h >>> 22;
}

export function slotCount(kind: ShardMapKind): number {
  switch (kind) {
    case 'hash':
      return HASH_SLOTS;
    case 'parity':
      return 2;
    case 'last-digit':
      return 10;
  }
}

/** The slot of a voter under the map's kind. */
export function slotOf(kind: ShardMapKind, voterId: number): number {
  switch (kind) {
    case 'hash':
      return hashSlot(voterId);
    case 'parity':
      return voterId % 2;
    case 'last-digit':
      return voterId % 10;
  }
}

/**
 * The initial map of a kind over `shards` shards. hash: contiguous ranges of
 * 1024 slots; parity and last-digit: slot d -> shard d+1 (they need exactly 2
 * and 10 shards; the topology validator enforces it).
 */
export function buildShardMap(kind: ShardMapKind, shards: number): ShardMap {
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`a shard map needs at least 1 shard, not ${shards}`);
  const slots = slotCount(kind);
  if (kind !== 'hash' && shards !== slots) throw new Error(`shard map "${kind}" needs exactly ${slots} shards, not ${shards}`);
  if (shards > slots) throw new Error(`${shards} shards cannot share ${slots} slots`);
  const ranges: SlotRange[] = [];
  for (let s = 1; s <= shards; s++) {
    const first = Math.ceil(((s - 1) * slots) / shards);
    const last = Math.ceil((s * slots) / shards) - 1;
    ranges.push({ first, last, shard: s });
  }
  return { version: SHARD_MAP_VERSION, kind, slots, shards, ranges };
}

/** Problems of a stored map (every slot covered exactly once, shards 1..S); empty when valid. */
export function checkShardMap(m: ShardMap): string[] {
  const problems: string[] = [];
  if (m.slots !== slotCount(m.kind)) problems.push(`slots: ${m.kind} maps have ${slotCount(m.kind)} slots, not ${m.slots}`);
  const owner = new Array<number>(m.slots).fill(0);
  for (const r of m.ranges) {
    if (!Number.isInteger(r.first) || !Number.isInteger(r.last) || r.first < 0 || r.last >= m.slots || r.first > r.last) {
      problems.push(`ranges: ${r.first}..${r.last} is not within 0..${m.slots - 1}`);
      continue;
    }
    if (!Number.isInteger(r.shard) || r.shard < 1 || r.shard > m.shards) problems.push(`ranges: shard ${r.shard} is not within 1..${m.shards}`);
    for (let i = r.first; i <= r.last; i++) {
      if (owner[i]) problems.push(`ranges: slot ${i} is given to shards ${owner[i]} and ${r.shard}`);
      owner[i] = r.shard;
    }
  }
  const missing = owner.findIndex((o) => o === 0);
  if (missing >= 0) problems.push(`ranges: slot ${missing} belongs to no shard`);
  return problems;
}

/**
 * A map compiled for fast lookups (one typed-array read after the slot
 * function). Throws on an invalid map.
 */
export class ShardRouter {
  private readonly table: Uint16Array;

  constructor(readonly map: ShardMap) {
    const problems = checkShardMap(map);
    if (problems.length > 0) throw new Error(`invalid shard map: ${problems.join('; ')}`);
    this.table = new Uint16Array(map.slots);
    for (const r of map.ranges) this.table.fill(r.shard, r.first, r.last + 1);
  }

  get shards(): number {
    return this.map.shards;
  }

  slotOf(voterId: number): number {
    return slotOf(this.map.kind, voterId);
  }

  /** Shard (1-based) of a valid voter id. */
  shardOf(voterId: number): number {
    return this.table[slotOf(this.map.kind, voterId)]!;
  }

  /** Slots owned by a shard, as ranges (for display). */
  slotsOf(shard: number): SlotRange[] {
    return this.map.ranges.filter((r) => r.shard === shard);
  }
}

/** One line per shard saying which voters it holds (README / status text). */
export function describeShardMap(m: ShardMap): string[] {
  switch (m.kind) {
    case 'parity':
      return m.ranges.map((r) => `shard ${r.shard}: ${r.first === 0 ? 'even' : 'odd'} voter ids`);
    case 'last-digit':
      return m.ranges.map((r) => `shard ${r.shard}: voter ids ending in ${r.first}${r.last !== r.first ? `..${r.last}` : ''}`);
    case 'hash':
      return m.shards > 0
        ? [...new Set(m.ranges.map((r) => r.shard))].map(
            (s) => `shard ${s}: hash slots ${m.ranges.filter((r) => r.shard === s).map((r) => `${r.first}-${r.last}`).join(', ')} of ${m.slots}`,
          )
        : [];
  }
}
