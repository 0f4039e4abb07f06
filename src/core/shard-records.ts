// The managers' records of the voting shards, and the pure rules that change
// them. Stored in the managers' KV (committed through Raft):
//
//   /dvote/shardmap        ShardMap (core/shard-map.ts)
//   /dvote/shards/<s>      ShardRecord: who is primary, under which epoch
//
// The epoch is the fencing token of a shard: it starts at 1 and grows by one
// at every change of primary (a promotion is a compare-and-set on the whole
// record, so two managers' decisions cannot both win). Every vote written on
// a primary is checked against it (see services/postgres/pg-schema.ts).
//
// Failover (decideFailover, run by the manager leader): when a primary's
// liveness record is dead, or the primary reports that its data is gone, the
// live, ready replica that has applied the most of the vote log is promoted
// under epoch+1; with no such replica, a primary that is alive but lost its
// data is "reinstated" (epoch+1, same primary: it rebuilds itself from the
// whole log). The deposed primary is fenced; once it has been wiped and
// seeded again it asks to rejoin (rejoin), and becomes a replica.
import type { ReplicationMode, Topology } from './topology.js';
import type { DesiredNode } from './layout.js';
import { nodeNames } from './naming.js';

export const SHARD_KEYS = {
  shardMap: '/dvote/shardmap',
  shardsPrefix: '/dvote/shards/',
  shard: (s: number) => `/dvote/shards/${s}`,
  topology: '/dvote/topology',
} as const;

/** The vote log: topic "votes", partition s-1 for shard s. */
export const VOTE_TOPIC = 'votes';

export function partitionOf(shard: number): number {
  return shard - 1;
}

/** Addresses of a node, as other nodes of the cluster reach it ("host:port"). */
export interface ShardMemberAddress {
  http: string;
  /** PostgreSQL nodes only. */
  pg?: string;
}

export interface ShardRecord {
  shard: number;
  /** Fencing token; +1 at every change of primary. */
  epoch: number;
  /** Node name of the PostgreSQL primary, e.g. "shard-1-pg-1". */
  primary: string;
  /** Node names of the PostgreSQL replicas, in instance order. */
  replicas: string[];
  /** Former primaries deposed by a promotion; they take no writes until re-seeded as replicas. */
  fenced: string[];
  /** Partition of the vote log topic this shard writes (shard - 1). */
  partition: number;
  topic: string;
  mode: ReplicationMode;
  /** The shard service's node name. */
  service: string;
  /** Addresses of the service and every PostgreSQL node named above. */
  members: Record<string, ShardMemberAddress>;
  /** Each epoch's start, and rejoins: who became primary and why (latest last, bounded). */
  history: ShardHistoryEntry[];
  /**
   * Votes reported lost to failovers (async mode): counted by deposed
   * primaries that came back with their data (what they held that the new
   * primary lacked). Absent: none reported.
   */
  lostVotes?: number;
  /**
   * async: acknowledged votes that were not yet in the vote log when a
   * primary was deposed, summed over failovers (an upper bound of what those
   * failovers lost: exact when the deposed primary's data is gone). Absent: none.
   */
  atRiskAtFailovers?: number;
  updatedAt: string;
}

export interface ShardHistoryEntry {
  epoch: number;
  primary: string;
  at: string;
  reason: string;
  /** async: votes the shard service had acknowledged on the deposed primary and not yet shipped to the log, at the failover. */
  atRisk?: number;
  /** Votes a rejoining deposed primary held that the new primary lacked. */
  lost?: number;
}

/** What the CLI tells the managers about a shard's nodes (POST /v1/shards/init). */
export interface ShardInitShard {
  shard: number;
  service: { name: string; http: string };
  /** PostgreSQL nodes of the shard in instance order; instance 1 is the first primary. */
  postgres: { name: string; instance: number; http: string; pg: string }[];
}

export interface ShardInitRequest {
  topology: Topology;
  shards: ShardInitShard[];
}

const HISTORY_LIMIT = 20;

/** The init request for a topology, with each node's in-cluster addresses. */
export function shardInitRequest(
  topology: Topology,
  desired: DesiredNode[],
  internal: (node: string, service: 'http' | 'pg', hostPort: number) => string,
): ShardInitRequest {
  const shards: ShardInitShard[] = [];
  for (let s = 1; s <= topology.shards; s++) {
    const svc = desired.find((d) => d.role === 'shard' && d.shard === s);
    const svcName = svc?.name ?? nodeNames.shardService(s);
    const pgs = desired
      .filter((d) => d.role === 'postgres' && d.shard === s)
      .sort((a, b) => a.index - b.index)
      .map((d) => ({ name: d.name, instance: d.index, http: internal(d.name, 'http', d.ports.http), pg: internal(d.name, 'pg', d.ports.pg!) }));
    shards.push({ shard: s, service: { name: svcName, http: svc ? internal(svc.name, 'http', svc.ports.http) : '' }, postgres: pgs });
  }
  return { topology, shards };
}

/** Problems of an init request (empty when usable). */
export function checkInitShard(x: ShardInitShard): string[] {
  const problems: string[] = [];
  const hostPort = /^[^:\s]+:\d{1,5}$/;
  if (!Number.isInteger(x.shard) || x.shard < 1) problems.push(`shards: ${String(x.shard)} is not a shard number`);
  if (!x.service || typeof x.service.name !== 'string' || !hostPort.test(x.service.http ?? '')) problems.push(`shard ${x.shard}: service must be {name, http: "host:port"}`);
  if (!Array.isArray(x.postgres) || x.postgres.length === 0) problems.push(`shard ${x.shard}: needs at least one PostgreSQL node`);
  else {
    for (const p of x.postgres) {
      if (typeof p.name !== 'string' || !hostPort.test(p.http ?? '') || !hostPort.test(p.pg ?? '') || !Number.isInteger(p.instance)) {
        problems.push(`shard ${x.shard}: each PostgreSQL node is {name, instance, http: "host:port", pg: "host:port"}`);
        break;
      }
    }
  }
  return problems;
}

/**
 * Converge a shard's record on the nodes the topology wants (the pure part of
 * POST /v1/shards/init). A new record makes the lowest instance primary at
 * epoch 1. An existing record keeps its primary and epoch whatever the
 * request says (failover owns those); wanted nodes it does not know become
 * replicas; replicas no longer wanted are dropped; addresses are refreshed.
 * Returns null when nothing changes.
 */
export function convergeShardRecord(current: ShardRecord | null, want: ShardInitShard, mode: ReplicationMode, now: string): ShardRecord | null {
  const members: Record<string, ShardMemberAddress> = { [want.service.name]: { http: want.service.http } };
  for (const p of want.postgres) members[p.name] = { http: p.http, pg: p.pg };
  const wanted = [...want.postgres].sort((a, b) => a.instance - b.instance).map((p) => p.name);
  if (!current) {
    const primary = wanted[0]!;
    return {
      shard: want.shard,
      epoch: 1,
      primary,
      replicas: wanted.slice(1),
      fenced: [],
      partition: partitionOf(want.shard),
      topic: VOTE_TOPIC,
      mode,
      service: want.service.name,
      members,
      history: [{ epoch: 1, primary, at: now, reason: 'created' }],
      updatedAt: now,
    };
  }
  const keep = new Set([current.primary, ...wanted]);
  const replicas = wanted.filter((n) => n !== current.primary && !current.fenced.includes(n));
  const fenced = current.fenced.filter((n) => wanted.includes(n));
  // The primary keeps its address entry even if the request no longer lists it.
  const mergedMembers: Record<string, ShardMemberAddress> = {};
  for (const name of [...keep, ...fenced, want.service.name]) {
    const m = members[name] ?? current.members[name];
    if (m) mergedMembers[name] = m;
  }
  const next: ShardRecord = {
    ...current,
    replicas,
    fenced,
    mode: current.mode,
    service: want.service.name,
    members: mergedMembers,
  };
  if (sameRecord(current, next)) return null;
  return { ...next, updatedAt: now };
}

function sameRecord(a: ShardRecord, b: ShardRecord): boolean {
  return canonicalJson({ ...a, updatedAt: '' }) === canonicalJson({ ...b, updatedAt: '' });
}

/** JSON with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export type PromoteOutcome = { ok: true; record: ShardRecord } | { ok: false; status: 404 | 409; problem: string };

/**
 * Make `newPrimary` (a replica) the primary under epoch+1, if the record is
 * still at `expectedEpoch`. The old primary is fenced: it takes no writes
 * until it is re-seeded as a replica. Pure; the manager commits the result as
 * a compare-and-set on the record it read.
 */
export function promote(
  current: ShardRecord | null,
  newPrimary: string,
  expectedEpoch: number,
  reason: string,
  now: string,
  extra: { atRisk?: number } = {},
): PromoteOutcome {
  if (!current) return { ok: false, status: 404, problem: 'no such shard record' };
  if (current.epoch !== expectedEpoch) {
    return { ok: false, status: 409, problem: `epoch is ${current.epoch}, not ${expectedEpoch}: someone changed the shard first; read it again` };
  }
  if (newPrimary === current.primary) return { ok: false, status: 409, problem: `${newPrimary} is already the primary` };
  if (!current.replicas.includes(newPrimary)) {
    return { ok: false, status: 409, problem: `${newPrimary} is not a replica of shard ${current.shard} (replicas: ${current.replicas.join(', ') || 'none'})` };
  }
  const epoch = current.epoch + 1;
  return {
    ok: true,
    record: {
      ...current,
      epoch,
      primary: newPrimary,
      replicas: current.replicas.filter((r) => r !== newPrimary),
      fenced: [...current.fenced.filter((f) => f !== current.primary), current.primary],
      history: [...current.history, { epoch, primary: newPrimary, at: now, reason, ...extra }].slice(-HISTORY_LIMIT),
      ...(extra.atRisk ? { atRiskAtFailovers: (current.atRiskAtFailovers ?? 0) + extra.atRisk } : {}),
      updatedAt: now,
    },
  };
}

/**
 * Raise the epoch and keep the primary (it lost its data and no replica can
 * take over: it rebuilds itself from the vote log, and the new epoch's barrier
 * tells it when it has everything).
 */
export function reinstate(current: ShardRecord | null, expectedEpoch: number, reason: string, now: string): PromoteOutcome {
  if (!current) return { ok: false, status: 404, problem: 'no such shard record' };
  if (current.epoch !== expectedEpoch) {
    return { ok: false, status: 409, problem: `epoch is ${current.epoch}, not ${expectedEpoch}: someone changed the shard first; read it again` };
  }
  const epoch = current.epoch + 1;
  return {
    ok: true,
    record: {
      ...current,
      epoch,
      history: [...current.history, { epoch, primary: current.primary, at: now, reason }].slice(-HISTORY_LIMIT),
      updatedAt: now,
    },
  };
}

/**
 * A fenced (deposed) primary, wiped and seeded again, becomes a replica. The
 * epoch must be the one it was fenced under (a later change makes it ask again).
 */
export function rejoin(current: ShardRecord | null, node: string, expectedEpoch: number, lost: number | null, now: string): PromoteOutcome {
  if (!current) return { ok: false, status: 404, problem: 'no such shard record' };
  if (current.epoch !== expectedEpoch) {
    return { ok: false, status: 409, problem: `epoch is ${current.epoch}, not ${expectedEpoch}: the shard changed; follow the record again` };
  }
  if (current.replicas.includes(node)) return { ok: true, record: current };
  if (!current.fenced.includes(node)) {
    return { ok: false, status: 409, problem: `${node} is not fenced in shard ${current.shard} (fenced: ${current.fenced.join(', ') || 'none'})` };
  }
  const lostText = lost === null ? 'its data was gone, nothing to count' : `it held ${lost} vote(s) the new primary lacked`;
  const entry: ShardHistoryEntry = { epoch: current.epoch, primary: current.primary, at: now, reason: `${node} rejoined as a replica after re-seeding (${lostText})` };
  if (lost !== null) entry.lost = lost;
  const record: ShardRecord = {
    ...current,
    replicas: [...current.replicas, node].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })),
    fenced: current.fenced.filter((f) => f !== node),
    history: [...current.history, entry].slice(-HISTORY_LIMIT),
    updatedAt: now,
  };
  if (lost !== null && lost > 0) record.lostVotes = (current.lostVotes ?? 0) + lost;
  return { ok: true, record };
}

/** What the managers know of one PostgreSQL copy: liveness and its latest heartbeat. */
export interface CopyReport {
  alive: boolean;
  /** From the copy's heartbeat (services/postgres/postgres-node.ts heartbeatInfo). */
  state?: string;
  copy?: string;
  epoch?: number;
  appliedOffset?: number | null;
  /** Votes stored (a tie-break, and the only measure without a vote log). */
  votes?: number | null;
  dataLostAtEpoch?: number;
}

export type FailoverDecision =
  | { action: 'none'; why?: string }
  | { action: 'promote'; to: string; reason: string }
  | { action: 'reinstate'; reason: string };

/**
 * Pure failover rule for one shard. `copies` maps node names to what the
 * managers know; a node absent from it counts as unknown (not dead, not a
 * candidate).
 */
export function decideFailover(record: ShardRecord, copies: Map<string, CopyReport>): FailoverDecision {
  const p = copies.get(record.primary);
  const primaryDead = p !== undefined && !p.alive;
  const primaryLostData = p !== undefined && p.alive && p.dataLostAtEpoch === record.epoch;
  if (!primaryDead && !primaryLostData) return { action: 'none' };
  const candidates = record.replicas
    .map((name) => ({ name, c: copies.get(name) }))
    .filter((x) => x.c?.alive && x.c.copy === 'ready' && x.c.state === 'replica' && x.c.epoch === record.epoch)
    .sort(
      (a, b) =>
        (b.c!.appliedOffset ?? -1) - (a.c!.appliedOffset ?? -1) ||
        (b.c!.votes ?? -1) - (a.c!.votes ?? -1) ||
        a.name.localeCompare(b.name, 'en', { numeric: true }),
    );
  const why = primaryDead ? `primary ${record.primary} is dead` : `primary ${record.primary} lost its data`;
  const best = candidates[0];
  if (best) {
    const how =
      typeof best.c!.appliedOffset === 'number'
        ? `had applied the vote log up to offset ${best.c!.appliedOffset}`
        : `held ${best.c!.votes ?? 'an unknown number of'} vote(s)`;
    return { action: 'promote', to: best.name, reason: `${why}; ${best.name} ${how}` };
  }
  if (primaryLostData) return { action: 'reinstate', reason: `${why} and no replica can take over: it rebuilds from the vote log` };
  return { action: 'none', why: `${why} and no live, ready replica can take over` };
}

/** What a PostgreSQL node is, according to its shard's record. */
export type PgRole = 'primary' | 'replica' | 'fenced' | 'unassigned';

export function roleIn(record: ShardRecord | null, node: string): PgRole {
  if (!record) return 'unassigned';
  if (record.primary === node) return 'primary';
  if (record.replicas.includes(node)) return 'replica';
  if (record.fenced.includes(node)) return 'fenced';
  return 'unassigned';
}
