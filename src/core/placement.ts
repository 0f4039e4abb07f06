// Where partitions live and who reads which: the managers' placement
// decisions for the broker log, as pure functions (no I/O, no randomness).
//
// - A new topic's replicas are spread evenly: each partition takes the RF
//   brokers that hold the fewest replicas so far (over every topic), so replica
//   counts never differ by more than one among the brokers placed on.
// - Leaders are balanced: a partition's replicas[0] is its preferred leader,
//   and preferred leaders are moved along augmenting paths until no broker
//   prefers-leads two more partitions than another could.
// - Consumers of a whole topic rotate over the partitions: consumer i's k-th
//   try of its j-th dequeue reads partition (i + j + k) mod n, the original
//   design's (i + j) mod n with the empty-partition fall-through added.
//   Members of a consumer group split the partitions round-robin.
// - A broker gone for good is replaced partition by partition with the live
//   broker that holds the fewest replicas and is not already a replica.
// Ties are broken by a rotation (partition number) and then by name, so the
// same inputs always give the same placement.

export interface PartitionPlacement {
  partition: number;
  /** replicas[0] is the preferred leader. */
  replicas: string[];
}

export interface BrokerLoad {
  replicas: number;
  leaders: number;
}

export type LoadMap = Map<string, BrokerLoad>;

/** Partitions of a topic created without a count: one per live broker (at least one). */
export function defaultPartitionCount(liveBrokers: number): number {
  return Math.max(1, liveBrokers);
}

/** Replica and preferred-leader counts per broker, over the given placements. */
export function loadOf(brokers: string[], placements: PartitionPlacement[][]): LoadMap {
  const load: LoadMap = new Map(brokers.map((b) => [b, { replicas: 0, leaders: 0 }]));
  for (const topic of placements) {
    for (const p of topic) {
      p.replicas.forEach((b, i) => {
        const l = load.get(b);
        if (!l) return;
        l.replicas++;
        if (i === 0) l.leaders++;
      });
    }
  }
  return load;
}

function byNameRotated(brokers: string[], rotation: number): string[] {
  const sorted = [...brokers].sort(compareNames);
  const r = sorted.length === 0 ? 0 : rotation % sorted.length;
  return [...sorted.slice(r), ...sorted.slice(0, r)];
}

/** Natural name order: broker-2 before broker-10. */
export function compareNames(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * Replicas for a new topic's partitions. `brokers` are the live brokers to
 * place on; `existing` is the load from other topics (so many small topics
 * spread too). Throws when RF is not in [1, brokers].
 */
export function placeTopic(opts: { partitions: number; replicationFactor: number; brokers: string[]; existing?: LoadMap }): PartitionPlacement[] {
  const { partitions, replicationFactor: rf, brokers } = opts;
  if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`partitions must be a positive integer, got ${partitions}`);
  if (!Number.isInteger(rf) || rf < 1) throw new Error(`replication factor must be a positive integer, got ${rf}`);
  if (rf > brokers.length) throw new Error(`replication factor ${rf} needs at least ${rf} live brokers, have ${brokers.length}`);
  const load: LoadMap = new Map(brokers.map((b) => [b, { ...(opts.existing?.get(b) ?? { replicas: 0, leaders: 0 }) }]));
  const out: PartitionPlacement[] = [];
  for (let p = 0; p < partitions; p++) {
    const order = byNameRotated(brokers, p);
    const rank = new Map(order.map((b, i) => [b, i]));
    // Fewest replicas first (keeps replica counts within one); among equals, fewest leaders.
    const chosen = [...order]
      .sort((a, b) => {
        const la = load.get(a)!;
        const lb = load.get(b)!;
        return la.replicas - lb.replicas || la.leaders - lb.leaders || rank.get(a)! - rank.get(b)!;
      })
      .slice(0, rf);
    const leader = [...chosen].sort((a, b) => load.get(a)!.leaders - load.get(b)!.leaders || rank.get(a)! - rank.get(b)!)[0]!;
    const replicas = [leader, ...chosen.filter((b) => b !== leader)];
    for (const b of replicas) load.get(b)!.replicas++;
    load.get(leader)!.leaders++;
    out.push({ partition: p, replicas });
  }
  return balanceLeaders([out], brokers, opts.existing)[0]!;
}

/**
 * Reorder replica lists so preferred leaders are as even as the replica sets
 * allow: while some broker leads at least two more partitions than another
 * broker it could hand one to (directly or through a chain of hand-overs),
 * shift leadership along that chain. `fixed` counts leaders that cannot move
 * (other topics when balancing one topic). Returns new placements.
 */
export function balanceLeaders(topics: PartitionPlacement[][], brokers: string[], fixed?: LoadMap): PartitionPlacement[][] {
  const out = topics.map((t) => t.map((p) => ({ partition: p.partition, replicas: [...p.replicas] })));
  const all = out.flat();
  const live = new Set(brokers);
  const count = new Map<string, number>(brokers.map((b) => [b, fixed?.get(b)?.leaders ?? 0]));
  for (const p of all) {
    const l = p.replicas[0];
    if (l !== undefined && live.has(l)) count.set(l, (count.get(l) ?? 0) + 1);
  }
  // A partition whose preferred leader is not live gets the least-loaded live replica.
  for (const p of all) {
    const l = p.replicas[0];
    if (l !== undefined && live.has(l)) continue;
    const alt = p.replicas.filter((b) => live.has(b)).sort((a, b) => count.get(a)! - count.get(b)! || compareNames(a, b))[0];
    if (alt === undefined) continue;
    p.replicas = [alt, ...p.replicas.filter((b) => b !== alt)];
    count.set(alt, count.get(alt)! + 1);
  }
  const guard = all.length * brokers.length + 10;
  for (let iter = 0; iter < guard; iter++) {
    const path = findAugmentingPath(all, brokers, count, live);
    if (!path) break;
    // path: [partitionIndex, newLeader] steps from the overloaded broker to the underloaded one.
    for (const { part, to } of path) {
      const p = all[part]!;
      const from = p.replicas[0]!;
      p.replicas = [to, ...p.replicas.filter((b) => b !== to)];
      count.set(from, count.get(from)! - 1);
      count.set(to, count.get(to)! + 1);
    }
  }
  return out;
}

function findAugmentingPath(
  all: PartitionPlacement[],
  brokers: string[],
  count: Map<string, number>,
  live: Set<string>,
): { part: number; to: string }[] | null {
  const sorted = [...brokers].sort((a, b) => count.get(b)! - count.get(a)! || compareNames(a, b));
  for (const src of sorted) {
    const srcCount = count.get(src)!;
    // BFS over brokers: an edge src -> x exists when src leads a partition x replicates.
    const prev = new Map<string, { from: string; part: number }>();
    const queue = [src];
    const seen = new Set([src]);
    while (queue.length > 0) {
      const b = queue.shift()!;
      for (let i = 0; i < all.length; i++) {
        const p = all[i]!;
        if (p.replicas[0] !== b) continue;
        for (const x of p.replicas.slice(1)) {
          if (!live.has(x) || seen.has(x)) continue;
          seen.add(x);
          prev.set(x, { from: b, part: i });
          if (count.get(x)! <= srcCount - 2) {
            const steps: { part: number; to: string }[] = [];
            let cur = x;
            while (cur !== src) {
              const e = prev.get(cur)!;
              steps.unshift({ part: e.part, to: cur });
              cur = e.from;
            }
            return steps;
          }
          queue.push(x);
        }
      }
    }
  }
  return null;
}

export interface Replacement {
  topic: string;
  partition: number;
  removed: string;
  added: string;
  replicas: string[];
}

/**
 * Replace every replica on a `gone` broker with a live broker that is not
 * already a replica of that partition, least loaded first. A partition that
 * cannot be repaired (fewer live brokers than RF) keeps its gone replica and
 * is listed in `underReplicated`. Leaders are rebalanced afterwards.
 */
export function planReplacements(opts: {
  topics: { name: string; partitions: PartitionPlacement[] }[];
  live: string[];
  gone: string[];
}): { topics: { name: string; partitions: PartitionPlacement[] }[]; replacements: Replacement[]; underReplicated: { topic: string; partition: number }[] } {
  const gone = new Set(opts.gone);
  const live = opts.live.filter((b) => !gone.has(b));
  const load = loadOf(live, opts.topics.map((t) => t.partitions));
  const replacements: Replacement[] = [];
  const underReplicated: { topic: string; partition: number }[] = [];
  const topics = opts.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ partition: p.partition, replicas: [...p.replicas] })) }));
  for (const t of topics) {
    for (const p of t.partitions) {
      for (const dead of p.replicas.filter((b) => gone.has(b))) {
        const rank = new Map(byNameRotated(live, p.partition).map((b, i) => [b, i]));
        const candidate = live
          .filter((b) => !p.replicas.includes(b))
          .sort((a, b) => {
            const la = load.get(a)!;
            const lb = load.get(b)!;
            return la.replicas - lb.replicas || la.leaders - lb.leaders || rank.get(a)! - rank.get(b)!;
          })[0];
        if (candidate === undefined) {
          if (!underReplicated.some((u) => u.topic === t.name && u.partition === p.partition)) underReplicated.push({ topic: t.name, partition: p.partition });
          continue;
        }
        // The newcomer goes last: it must catch up before it could lead.
        p.replicas = [...p.replicas.filter((b) => b !== dead), candidate];
        load.get(candidate)!.replicas++;
        replacements.push({ topic: t.name, partition: p.partition, removed: dead, added: candidate, replicas: p.replicas });
      }
    }
  }
  if (replacements.length > 0) {
    const balanced = balanceLeaders(topics.map((t) => t.partitions), live);
    topics.forEach((t, i) => (t.partitions = balanced[i]!));
    for (const r of replacements) r.replicas = topics.find((t) => t.name === r.topic)!.partitions.find((p) => p.partition === r.partition)!.replicas;
  }
  return { topics, replacements, underReplicated };
}

/** The order in which a whole-topic consumer tries partitions on its j-th dequeue. */
export function dequeueOrder(consumerIndex: number, dequeueCount: number, partitions: number): number[] {
  const start = (((consumerIndex + dequeueCount) % partitions) + partitions) % partitions;
  return Array.from({ length: partitions }, (_, k) => (start + k) % partitions);
}

/** Partitions of each member of a consumer group: partition p goes to the (p mod m)-th member in name order. */
export function assignGroupPartitions(members: string[], partitions: number): Map<string, number[]> {
  const sorted = [...new Set(members)].sort(compareNames);
  const out = new Map<string, number[]>(sorted.map((m) => [m, []]));
  if (sorted.length === 0) return out;
  for (let p = 0; p < partitions; p++) out.get(sorted[p % sorted.length]!)!.push(p);
  return out;
}
