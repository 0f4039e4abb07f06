// Gather a cluster's status: what the runtime says about each node, plus what
// each node says about itself on /health. The document is dvote.status/v1.
import { request } from 'undici';
import type { ShardRecord } from '../core/shard-records.js';
import type { ObservedNode, Runtime } from '../runtime/runtime.js';
import { sleep } from '../runtime/wait.js';

export interface StatusNode {
  name: string;
  role: string;
  /** Raft role for Raft members (leader/follower/...), else "running"; or the runtime state when not running. */
  state: string;
  runtimeState: ObservedNode['state'];
  disconnected: boolean;
  healthy: boolean;
  leader: string | null;
  term: number | null;
  commitIndex: number | null;
  appliedIndex: number | null;
  endpoint: string;
  shard?: number;
  lag?: number;
  /** Why the node is unhealthy, when it is. */
  problem?: string;
  health?: Record<string, unknown>;
}

/** One row per broker partition, merged from the brokers' /health reports. */
export interface StatusPartition {
  topic: string;
  partition: number;
  /** The broker that leads it in the highest term reported, or null. */
  leader: string | null;
  term: number | null;
  /** Voters (and learners, marked "+") as the leader (or any replica) reports them. */
  replicas: string[];
  learners: string[];
  /** Brokers that answered for it. */
  reportedBy: string[];
  commitIndex: number | null;
  /** Messages stored (the next offset). */
  highWatermark: number | null;
  /** Leader: entries its slowest replica is behind. */
  lag: number | null;
}

/** One copy (PostgreSQL node) of a shard, as it reports itself. */
export interface StatusShardCopy {
  node: string;
  /** Role in the shard record. */
  role: 'primary' | 'replica' | 'fenced';
  /** What the copy says it is doing (primary, replica, seeding, promoting, rejoining, lost-data, ...), or null without an answer. */
  state: string | null;
  healthy: boolean;
  /** Votes stored in the copy (counted at most every second). */
  votes: number | null;
  /** Next vote log offset it will apply. */
  appliedOffset: number | null;
  /** Vote log entries committed on the brokers and not applied yet. */
  lag: number | null;
}

/** One row per voting shard: the managers' record merged with what its nodes report. */
export interface StatusShard {
  shard: number;
  epoch: number;
  mode: string;
  primary: string;
  replicas: string[];
  fenced: string[];
  service: string;
  /** The shard service's state (serving, degraded, waiting) or null without an answer. */
  serviceState: string | null;
  /** async mode: acknowledged votes not yet in the vote log (from the service). */
  atRisk: number | null;
  /** Votes reported lost to failovers (record.lostVotes). */
  lostVotes: number;
  /** async: acknowledged votes not yet in the log when primaries were deposed (record.atRiskAtFailovers). */
  atRiskAtFailovers: number;
  copies: StatusShardCopy[];
}

export interface StatusDoc {
  schema: 'dvote.status/v1';
  cluster: string;
  runtime: string;
  healthy: boolean;
  /** The manager leader all live managers agree on, or null. */
  managerLeader: string | null;
  problems: string[];
  nodes: StatusNode[];
  /** Broker log partitions (empty without brokers). */
  partitions: StatusPartition[];
  /** Voting shards (empty without shards, or when no manager answered). */
  shards: StatusShard[];
  checkedAt: string;
}

/** Shard rows from the managers' records and the nodes' health (pure). */
export function shardRows(records: ShardRecord[], nodes: StatusNode[]): StatusShard[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  return records
    .map((r): StatusShard => {
      const copy = (node: string, role: StatusShardCopy['role']): StatusShardCopy => {
        const n = byName.get(node);
        const h = n?.health;
        return {
          node,
          role,
          state: h && typeof h.state === 'string' ? h.state : null,
          healthy: n?.healthy ?? false,
          votes: num(h?.votes),
          appliedOffset: num(h?.appliedOffset),
          lag: num(h?.lag),
        };
      };
      const svc = byName.get(r.service)?.health;
      return {
        shard: r.shard,
        epoch: r.epoch,
        mode: r.mode,
        primary: r.primary,
        replicas: [...r.replicas],
        fenced: [...r.fenced],
        service: r.service,
        serviceState: svc && typeof svc.state === 'string' ? svc.state : null,
        atRisk: num(svc?.atRisk),
        lostVotes: r.lostVotes ?? 0,
        atRiskAtFailovers: r.atRiskAtFailovers ?? 0,
        copies: [copy(r.primary, 'primary'), ...r.replicas.map((x) => copy(x, 'replica')), ...r.fenced.map((x) => copy(x, 'fenced'))],
      };
    })
    .sort((a, b) => a.shard - b.shard);
}

/** The shard records from any running manager (stale reads are fine for a status). */
async function fetchShardRecords(managers: StatusNode[]): Promise<ShardRecord[] | null> {
  for (const m of managers) {
    if (m.runtimeState !== 'running') continue;
    try {
      const res = await request(`${m.endpoint}/v1/shards?stale=true`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      if (res.statusCode !== 200) {
        await res.body.dump();
        continue;
      }
      const body = (await res.body.json()) as { shards?: ShardRecord[] };
      return Array.isArray(body.shards) ? body.shards : [];
    } catch {
      // next manager
    }
  }
  return null;
}

interface PartitionHealth {
  topic: string;
  partition: number;
  role: string;
  term: number;
  commitIndex: number;
  highWatermark: number;
  voters: string[];
  learners: string[];
  lag: number;
}

/**
 * Merge the partition reports of every broker's /health into one row per
 * partition. The leader is a replica that says it leads in the highest term
 * any replica reports (a deposed leader that has not heard of the new term
 * yet does not count); without one the row has leader null.
 */
export function partitionRows(nodes: StatusNode[]): StatusPartition[] {
  const reports = new Map<string, { node: string; p: PartitionHealth }[]>();
  for (const n of nodes) {
    if (n.role !== 'broker' || !n.health || !Array.isArray(n.health.partitions)) continue;
    for (const p of n.health.partitions as PartitionHealth[]) {
      const key = `${p.topic}/${p.partition}`;
      if (!reports.has(key)) reports.set(key, []);
      reports.get(key)!.push({ node: n.name, p });
    }
  }
  const rows: StatusPartition[] = [];
  for (const list of reports.values()) {
    const first = list[0]!.p;
    const term = Math.max(...list.map((r) => r.p.term));
    const lead = list.find((r) => r.p.role === 'leader' && r.p.term === term);
    const source = lead?.p ?? list.reduce((a, b) => (b.p.commitIndex > a.p.commitIndex ? b : a)).p;
    rows.push({
      topic: first.topic,
      partition: first.partition,
      leader: lead?.node ?? null,
      term,
      replicas: [...source.voters],
      learners: [...source.learners],
      reportedBy: list.map((r) => r.node),
      commitIndex: lead ? source.commitIndex : Math.max(...list.map((r) => r.p.commitIndex)),
      highWatermark: lead ? source.highWatermark : Math.max(...list.map((r) => r.p.highWatermark)),
      lag: lead ? source.lag : null,
    });
  }
  return rows.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

export async function fetchHealth(endpoint: string, timeoutMs = 1000): Promise<{ status: number; body: Record<string, unknown> } | { error: string }> {
  try {
    const res = await request(`${endpoint}/health`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}

export async function collectStatus(runtime: Runtime, cluster: string): Promise<StatusDoc> {
  const observed = await runtime.listNodes(cluster);
  const nodes = await Promise.all(
    observed.map(async (o): Promise<StatusNode> => {
      const base: StatusNode = {
        name: o.name,
        role: o.role,
        state: o.state,
        runtimeState: o.state,
        disconnected: o.disconnected,
        healthy: false,
        leader: null,
        term: null,
        commitIndex: null,
        appliedIndex: null,
        endpoint: o.endpoint,
        ...(o.labels['io.dvote.shard'] ? { shard: Number(o.labels['io.dvote.shard']) } : {}),
      };
      if (o.state !== 'running') return { ...base, problem: `node is ${o.state}` };
      const h = await fetchHealth(o.endpoint);
      if ('error' in h) return { ...base, state: o.disconnected ? 'disconnected' : 'unreachable', problem: `no answer on ${o.endpoint}/health: ${h.error}` };
      const b = h.body;
      return {
        ...base,
        state: typeof b.state === 'string' ? b.state : 'running',
        healthy: h.status === 200 && b.healthy !== false && !o.disconnected,
        leader: typeof b.leader === 'string' ? b.leader : null,
        term: num(b.term),
        commitIndex: num(b.commitIndex),
        appliedIndex: num(b.appliedIndex),
        ...(num(b.lag) !== null ? { lag: num(b.lag)! } : {}),
        ...(h.status !== 200 || b.healthy === false ? { problem: String(b.reason ?? b.error ?? `health answered ${h.status}`) } : {}),
        ...(o.disconnected ? { problem: 'disconnected from the cluster network' } : {}),
        health: b,
      };
    }),
  );
  nodes.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  const problems: string[] = [];
  const managers = nodes.filter((n) => n.role === 'manager');
  const leaders = managers.filter((n) => n.state === 'leader' && n.healthy);
  let managerLeader: string | null = null;
  if (managers.length > 0) {
    // The leader of the highest term among live managers; followers must agree.
    const top = leaders.sort((a, b) => (b.term ?? 0) - (a.term ?? 0))[0];
    if (!top) problems.push('the managers have no leader');
    else {
      managerLeader = top.name;
      const sameTermLeaders = leaders.filter((l) => l.term === top.term);
      if (sameTermLeaders.length > 1) problems.push(`two managers claim leadership in term ${top.term}`);
    }
  }
  for (const n of nodes) if (!n.healthy) problems.push(`${n.name}: ${n.problem ?? 'unhealthy'}`);
  const partitions = partitionRows(nodes);
  for (const p of partitions) if (p.leader === null) problems.push(`partition ${p.topic}/${p.partition} has no leader`);
  let shards: StatusShard[] = [];
  if (nodes.some((n) => n.role === 'postgres' || n.role === 'shard')) {
    const records = await fetchShardRecords(managers);
    if (records) shards = shardRows(records, nodes);
    for (const sh of shards) {
      const p = sh.copies[0]!;
      if (p.state !== 'primary') problems.push(`shard ${sh.shard}: its primary ${sh.primary} is ${p.state ?? 'not answering'}`);
    }
  }
  return {
    schema: 'dvote.status/v1',
    cluster,
    runtime: runtime.kind,
    healthy: nodes.length > 0 && problems.length === 0,
    managerLeader,
    problems,
    nodes,
    partitions,
    shards,
    checkedAt: new Date().toISOString(),
  };
}

/**
 * The status after `up` or `scale` has acted: a Raft election started by the
 * new nodes' start-up (a partition or the managers briefly leaderless) is not
 * a verdict, so poll until the cluster reports healthy or `settleMs` passes.
 * A node that is not running (or is cut off) will not heal by waiting, so
 * that ends the wait at once. Returns the last status seen.
 */
export async function settleStatus(
  collect: () => Promise<StatusDoc>,
  opts: { settleMs: number; intervalMs?: number; signal?: AbortSignal; onPending?: (reason: string) => void; first?: StatusDoc },
): Promise<StatusDoc> {
  const deadline = performance.now() + opts.settleMs;
  let first = opts.first;
  for (;;) {
    const status = first ?? (await collect());
    first = undefined;
    if (status.healthy || performance.now() >= deadline || opts.signal?.aborted) return status;
    if (status.nodes.some((n) => n.runtimeState !== 'running' || n.disconnected)) return status;
    opts.onPending?.(status.problems[0] ?? 'not healthy yet');
    await sleep(Math.min(opts.intervalMs ?? 200, Math.max(0, deadline - performance.now())), opts.signal);
  }
}

/** How long `up` and `scale` wait for a freshly changed cluster to report healthy before they exit 1. */
export const SETTLE_MS = 15_000;
