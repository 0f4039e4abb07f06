// `dvote bench` for votes: load the cluster (closed or open loop, one vote per
// request or batches), optionally inject faults, then verify every copy and
// report throughput, latency percentiles, errors by kind, a timeline, the
// faults with their recovery times, and the verification.
import pg from 'pg';
import { VoteClient, type VoteResult } from '../client/vote-client.js';
import { ShardRouter } from '../core/shard-map.js';
import type { ShardRecord } from '../core/shard-records.js';
import type { Runtime } from '../runtime/runtime.js';
import { OUTBOX_VOTES_SQL, pgConnection } from '../services/postgres/pg-schema.js';
import { runChaos, type FaultEvent, type FaultKind } from './chaos.js';
import type { LatencySummary } from './histogram.js';
import { runLoad, type GeneratorStats, type LoadMode, type OpOutcome, type TimelinePoint } from './load-generator.js';
import { verifyVotes, type CopyRef, type VerifyResult } from './verify.js';
import { Workload } from './workload.js';

export interface VoteBenchOptions {
  votes?: number;
  durationMs?: number;
  /** Send this long first with the same load and leave it out of the figures (its votes are verified too). */
  warmupMs?: number;
  concurrency?: number;
  rate?: number;
  /** Size of the voter id space used by the run (default: the number of votes). */
  voters?: number;
  duplicates: number;
  batch: number;
  chaos: boolean;
  /** With chaos: only these faults, each once, in order (default: every kind, cycling). */
  faults?: FaultKind[];
  verify: boolean;
  settleTimeoutMs: number;
  seed: number;
  /** Talk to shard services at their direct address (container IP) rather than the published port. */
  direct: boolean;
  connections?: number;
}

export interface BenchEnv {
  runtime: Runtime;
  cluster: string;
  signal: AbortSignal;
  progress: (msg: string) => void;
}

export interface BenchDoc {
  schema: 'dvote.bench/v1';
  cluster: string;
  runtime: string;
  startedAt: string;
  config: {
    workload: 'vote';
    mode: LoadMode;
    votes: number | null;
    durationMs: number | null;
    /** Load sent before the measured run and left out of throughput, latency and timeline (0: none). */
    warmupMs: number;
    batch: number;
    voters: number;
    duplicates: number;
    chaos: boolean;
    replication: string;
    shards: number;
    replicas: number;
    brokers: number;
    idRange: { from: number; to: number };
    seed: number;
  };
  /** Every vote of the run, warm-up included (all of them are verified). */
  votes: { sent: number; acknowledged: number; rejected: number; failed: number; unknownOutcome: number };
  /** The warm-up, when there was one: what it sent, not counted in throughput or latency. */
  warmup: { elapsedMs: number; votes: number; failedRequests: number } | null;
  throughput: { votesPerSec: number; requestsPerSec: number; elapsedMs: number };
  latencyMs: LatencySummary;
  /** The load generator's own cost and delays over the measured run (it shares the machine, and its delays are inside latencyMs). */
  generator: GeneratorStats;
  errorsByKind: Record<string, number>;
  timeline: TimelinePoint[];
  faults: FaultEvent[];
  verify: (VerifyResult & { skipped?: false }) | { skipped: true; ok: boolean; lost: number; duplicated: number; divergent: number };
  /** async mode: votes committed on a primary but not yet shipped to the log at the end of the load. */
  atRisk: number | null;
}

export async function runVoteBench(env: BenchEnv, o: VoteBenchOptions): Promise<BenchDoc> {
  const { runtime, cluster } = env;
  const startedAt = new Date().toISOString();
  const nodes = await runtime.listNodes(cluster);
  const managers = nodes.filter((n) => n.role === 'manager' && n.state === 'running').map((n) => n.endpoint);
  if (managers.length === 0) throw new Error(`no running manager in cluster "${cluster}"`);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const client = new VoteClient({
    managers,
    endpointOf: (node, adv) => {
      const n = byName.get(node);
      if (!n) return `http://${adv}`;
      return o.direct ? n.directEndpoint : n.endpoint;
    },
    connections: o.connections ?? Math.max(8, Math.min(256, o.concurrency ?? 64)),
    timeoutMs: 30_000,
  });
  try {
    const snap = await client.connect();
    const topology = snap.topology!;
    const router = new ShardRouter(snap.shardMap!);
    const records = (): ShardRecord[] => client.directory.current()?.shards ?? snap.shards;
    client.directory.watch(() => undefined);

    // A fresh id range: above every vote already stored, so earlier runs do not interfere.
    const total = o.votes ?? null;
    // Default id space: one voter per vote of a counted run (1,000,000 for a
    // timed one), plus 1,000,000 for a warm-up, whose votes must not use up
    // the ids of the measured run (they would come back as repeat voters).
    const warmupIds = o.warmupMs !== undefined && o.warmupMs > 0 ? 1_000_000 : 0;
    const voters = o.voters ?? Math.max(1, total ?? 1_000_000) + warmupIds;
    const from = Math.max(topology.voterIds.min, (await maxStoredVoter(records(), byName)) + 1);
    const to = from + voters;
    if (to - 1 > topology.voterIds.max) {
      throw new Error(`not enough unused voter ids: the run needs ${voters} from ${from}, the cluster accepts up to ${topology.voterIds.max}; lower --voters or start a fresh cluster`);
    }
    const workload = new Workload({ minId: from, voters, duplicates: o.duplicates, choices: topology.ballot.length, seed: o.seed });

    const acknowledged = new Map<number, number>();
    /** Voters answered "accepted" (at most once each, or the cluster counted a vote twice). */
    const accepted = new Set<number>();
    const unknown = new Set<number>();
    let acknowledgedTwice = 0;
    let rejected = 0;
    let failedVotes = 0;
    let sent = 0;
    const t0 = performance.now();
    // Successful votes per shard, in completion order: when the request was
    // sent and when it was answered (ms since t0), for recovery after faults.
    const successes = new Map<number, { sent: number; done: number }[]>();
    const succeeded = (r: VoteResult, sentAt: number) => {
      const s = r.shard ?? 0;
      (successes.get(s) ?? successes.set(s, []).get(s)!).push({ sent: sentAt, done: performance.now() - t0 });
    };

    const onResult = (r: VoteResult, planned: { voterId: number; choice: number }, sentAt: number) => {
      const id = planned.voterId;
      if (r.status === 'accepted') {
        succeeded(r, sentAt);
        // Twice "accepted" for one voter is a double count. An "already
        // voted" seen first is fine when it names this choice: a batch
        // request is answered when all its votes are, so a later vote of the
        // same voter in a smaller request can be answered first.
        const choice = r.choiceIndex ?? planned.choice;
        const known = acknowledged.get(id);
        if (accepted.has(id) || (known !== undefined && known !== choice)) acknowledgedTwice++;
        accepted.add(id);
        acknowledged.set(id, choice);
        unknown.delete(id);
        return true;
      }
      if (r.status === 'already-voted') {
        succeeded(r, sentAt);
        rejected++;
        // The cluster names the stored first choice: it is stored, so it is acknowledged now.
        if (!acknowledged.has(id) && r.choiceIndex !== undefined) {
          acknowledged.set(id, r.choiceIndex);
          unknown.delete(id);
        }
        return true;
      }
      failedVotes++;
      if (!acknowledged.has(id)) unknown.add(id);
      return false;
    };

    const op = async (): Promise<OpOutcome> => {
      const planned = Array.from({ length: o.batch }, () => workload.take());
      sent += planned.length;
      const sentAt = performance.now() - t0;
      let results: VoteResult[];
      try {
        results =
          o.batch === 1
            ? [await client.vote(planned[0]!.voterId, planned[0]!.choice)]
            : await client.voteBatch(planned.map((p) => ({ voterId: p.voterId, choice: p.choice })));
      } catch (e) {
        for (const p of planned) {
          failedVotes++;
          if (!acknowledged.has(p.voterId)) unknown.add(p.voterId);
        }
        return { ok: false, kind: String((e as Error).message).slice(0, 80), units: planned.length };
      }
      let okAll = true;
      let firstError = '';
      results.forEach((r, i) => {
        const good = onResult(r, planned[i]!, sentAt);
        if (!good) {
          okAll = false;
          firstError ||= `${r.status}: ${r.error ?? r.httpStatus}`.slice(0, 80);
        }
      });
      return okAll ? { ok: true, units: planned.length } : { ok: false, kind: firstError, units: planned.length };
    };

    const mode: LoadMode =
      o.rate !== undefined ? { kind: 'open', rate: o.rate, maxInFlight: Math.max(64, o.concurrency ?? 1024) } : { kind: 'closed', concurrency: o.concurrency ?? 64 };
    const requests = total !== null ? Math.ceil(total / o.batch) : undefined;

    const chaosAbort = new AbortController();
    const chaosRun = o.chaos
      ? runChaos({
          runtime,
          cluster,
          managers,
          shards: records,
          firstAtMs: (o.warmupMs ?? 0) + 1000,
          everyMs: 3500,
          downMs: 1500,
          t0,
          signal: chaosAbort.signal,
          log: env.progress,
          ...(o.faults && o.faults.length > 0 ? { kinds: o.faults, maxFaults: o.faults.length } : {}),
        })
      : Promise.resolve([] as FaultEvent[]);

    let warmup: BenchDoc['warmup'] = null;
    if (o.warmupMs !== undefined && o.warmupMs > 0) {
      const before = acknowledged.size + rejected;
      const w = await runLoad({
        mode,
        durationMs: o.warmupMs,
        op,
        signal: env.signal,
        onProgress: (p) => env.progress(`warm-up ${Math.round(p.elapsedMs / 1000)}s: ${acknowledged.size} acknowledged, ${p.inFlight} in flight`),
      });
      warmup = { elapsedMs: Math.round(w.elapsedMs), votes: acknowledged.size + rejected - before, failedRequests: w.failed };
    }
    const countedBefore = acknowledged.size + rejected;

    const load = await runLoad({
      mode,
      ...(requests !== undefined ? { total: requests } : {}),
      ...(o.durationMs !== undefined ? { durationMs: o.durationMs } : {}),
      op,
      signal: env.signal,
      onProgress: (p) =>
        env.progress(`${Math.round(p.elapsedMs / 1000)}s: ${acknowledged.size} acknowledged, ${failedVotes} failed, ${p.inFlight} in flight`),
    });
    chaosAbort.abort();
    const faults = await chaosRun;
    // Recovery: from the fault to the answer of the first successful vote
    // SENT after it, on each shard the fault can touch (a PostgreSQL node:
    // its shard; anything else: every shard), the slowest of those.
    for (const f of faults) {
      const m = /^shard-(\d+)-/.exec(f.target);
      const shards = m ? [Number(m[1])] : [...successes.keys()];
      let worst: number | null = 0;
      for (const s of shards) {
        const first = (successes.get(s) ?? []).find((x) => x.sent >= f.at);
        if (!first) {
          worst = null;
          break;
        }
        worst = Math.max(worst, Math.round(first.done - f.at));
      }
      f.recoveryMs = shards.length > 0 ? worst : null;
    }

    const atRisk = await votesAtRisk(records(), byName);

    let verify: BenchDoc['verify'];
    if (o.verify) {
      // Faults are undone; give replicas time to settle, then read every copy.
      const latest = await client.directory.refresh().catch(() => null);
      const recs = latest?.shards ?? records();
      const nodesNow = new Map((await runtime.listNodes(cluster)).map((n) => [n.name, n]));
      const copies: CopyRef[] = recs.flatMap((r) =>
        [r.primary, ...r.replicas].map((name) => {
          const n = nodesNow.get(name);
          return {
            shard: r.shard,
            node: name,
            role: name === r.primary ? 'primary' : 'replica',
            pgAddress: n && n.state === 'running' ? (n.pgAddress ?? null) : null,
          };
        }),
      );
      env.progress('verifying every copy');
      verify = await verifyVotes({
        copies,
        acknowledged,
        unknown,
        acknowledgedTwice,
        range: { from, to },
        shardOf: (id) => router.shardOf(id),
        settleTimeoutMs: o.settleTimeoutMs,
        onProgress: env.progress,
        signal: env.signal,
      });
    } else {
      verify = { skipped: true, ok: acknowledgedTwice === 0, lost: 0, duplicated: acknowledgedTwice, divergent: 0 };
    }

    const secs = load.elapsedMs / 1000;
    return {
      schema: 'dvote.bench/v1',
      cluster,
      runtime: runtime.kind,
      startedAt,
      config: {
        workload: 'vote',
        mode,
        votes: total,
        durationMs: o.durationMs ?? null,
        warmupMs: o.warmupMs ?? 0,
        batch: o.batch,
        voters,
        duplicates: o.duplicates,
        chaos: o.chaos,
        replication: topology.replication,
        shards: topology.shards,
        replicas: topology.replicas,
        brokers: topology.brokers,
        idRange: { from, to },
        seed: o.seed,
      },
      votes: { sent, acknowledged: acknowledged.size, rejected, failed: failedVotes, unknownOutcome: unknown.size },
      warmup,
      throughput: {
        votesPerSec: Math.round(((acknowledged.size + rejected - countedBefore) / secs) * 10) / 10,
        requestsPerSec: Math.round((load.ok / secs) * 10) / 10,
        elapsedMs: Math.round(load.elapsedMs),
      },
      latencyMs: load.latency,
      generator: load.generator,
      errorsByKind: load.errorsByKind,
      timeline: load.timeline,
      faults,
      verify,
      atRisk,
    };
  } finally {
    await client.close();
  }
}

/** The highest voter id already stored on any primary (0 when none). */
async function maxStoredVoter(records: ShardRecord[], byName: Map<string, { pgAddress?: string; state: string }>): Promise<number> {
  let max = 0;
  for (const r of records) {
    const n = byName.get(r.primary);
    if (!n?.pgAddress || n.state !== 'running') continue;
    const c = new pg.Client({ ...pgConnection(n.pgAddress, 'dvote-bench'), connectionTimeoutMillis: 5_000 });
    try {
      await c.connect();
      const q = await c.query<{ m: string | null }>('SELECT max(voter_id)::text AS m FROM votes');
      max = Math.max(max, Number(q.rows[0]?.m ?? 0));
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return max;
}

/** Votes committed on a primary whose outbox row was not shipped to the vote log yet. */
async function votesAtRisk(records: ShardRecord[], byName: Map<string, { pgAddress?: string; state: string }>): Promise<number | null> {
  let total = 0;
  for (const r of records) {
    if (r.mode !== 'async') continue;
    const n = byName.get(r.primary);
    if (!n?.pgAddress || n.state !== 'running') return null;
    const c = new pg.Client({ ...pgConnection(n.pgAddress, 'dvote-bench'), connectionTimeoutMillis: 5_000 });
    try {
      await c.connect();
      const q = await c.query<{ n: number | string }>(OUTBOX_VOTES_SQL);
      total += Number(q.rows[0]!.n);
    } catch {
      return null;
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return total;
}
