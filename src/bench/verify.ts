// Verification after a bench run, reading every PostgreSQL copy directly:
// every acknowledged vote must be on its shard's primary and on every replica
// exactly once with the acknowledged choice; copies of a shard must hold the
// same set; tallies must agree. Votes whose request failed or timed out may or
// may not be stored; they are counted, not blamed.
import pg from 'pg';
import { pgConnection } from '../services/postgres/pg-schema.js';

export interface CopyRef {
  shard: number;
  node: string;
  /** primary | replica | fenced | unassigned (from the shard record). */
  role: string;
  /** "host:port" reachable from here; null when the node is not running. */
  pgAddress: string | null;
}

export interface VerifyInput {
  copies: CopyRef[];
  /** voterId -> acknowledged choice (1-based ballot position). */
  acknowledged: Map<number, number>;
  /** Voters whose last request had an unknown outcome (maybe stored). */
  unknown: Set<number>;
  /** Voters the cluster acknowledged more than once (two "accepted" answers). */
  acknowledgedTwice: number;
  /** The id range the run used: [from, to). */
  range: { from: number; to: number };
  shardOf: (voterId: number) => number;
  /** Wait this long at most for replicas to catch up before comparing. */
  settleTimeoutMs: number;
  /** Copies that are allowed to be behind or empty (e.g. a deposed primary being re-seeded). */
  ignore?: (c: CopyRef) => boolean;
  onProgress?: (msg: string) => void;
  signal?: AbortSignal;
}

export interface CopyReport {
  shard: number;
  node: string;
  role: string;
  votes: number | null;
  /** Acknowledged votes of this shard missing here. */
  missing: number;
  /** Stored with another choice than the acknowledged one. */
  wrongChoice: number;
  /** Votes here that the primary does not have (or vice versa for the primary: none). */
  extra: number;
  counts: Record<string, number>;
  error?: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Acknowledged votes missing from at least one checked copy (distinct voters). */
  lost: number;
  /** Acknowledged votes missing from their shard's primary. */
  lostOnPrimary: number;
  /** Voters acknowledged twice, or stored on more than one shard. */
  duplicated: number;
  /** Voters on which copies of the same shard disagree (missing on one, or different choice). */
  divergent: number;
  /** Stored votes whose request had an unknown outcome (allowed). */
  unacknowledgedStored: number;
  /** Stored votes the run never acknowledged nor left unknown (must be 0). */
  unexpected: number;
  tallies: { shard: number; agree: boolean; counts: Record<string, Record<string, number>> }[];
  copies: CopyReport[];
  settledMs: number;
  problems: string[];
}

type Row = [number, number];

async function readCopy(c: CopyRef, range: { from: number; to: number }): Promise<Map<number, number>> {
  const client = new pg.Client({ ...pgConnection(c.pgAddress!, 'dvote-verify'), connectionTimeoutMillis: 5_000, query_timeout: 120_000 });
  await client.connect();
  try {
    const r = await client.query<Row>({
      text: 'SELECT voter_id, choice FROM votes WHERE voter_id >= $1 AND voter_id < $2',
      values: [range.from, range.to],
      rowMode: 'array',
    });
    const m = new Map<number, number>();
    for (const [id, choice] of r.rows) m.set(Number(id), Number(choice));
    return m;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function countCopy(c: CopyRef, range: { from: number; to: number }): Promise<number> {
  const client = new pg.Client({ ...pgConnection(c.pgAddress!, 'dvote-verify'), connectionTimeoutMillis: 5_000, query_timeout: 30_000 });
  await client.connect();
  try {
    const r = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM votes WHERE voter_id >= $1 AND voter_id < $2', [range.from, range.to]);
    return Number(r.rows[0]!.n);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Wait until every live copy of each shard holds as many votes as its primary (and the counts stop moving). */
async function settle(input: VerifyInput, checked: CopyRef[]): Promise<number> {
  const t0 = performance.now();
  let last = '';
  let stableSince = performance.now();
  while (performance.now() - t0 < input.settleTimeoutMs && !input.signal?.aborted) {
    const counts = await Promise.all(checked.map(async (c) => [c, await countCopy(c, input.range).catch(() => -1)] as const));
    const key = counts.map(([, n]) => n).join(',');
    const byShard = new Map<number, number[]>();
    for (const [c, n] of counts) byShard.set(c.shard, [...(byShard.get(c.shard) ?? []), n]);
    const equal = [...byShard.values()].every((ns) => ns.every((n) => n === ns[0] && n >= 0));
    if (key !== last) {
      last = key;
      stableSince = performance.now();
      input.onProgress?.(`copies hold ${key}`);
    }
    if (equal && performance.now() - stableSince >= 300) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return Math.round(performance.now() - t0);
}

export async function verifyVotes(input: VerifyInput): Promise<VerifyResult> {
  const problems: string[] = [];
  const live = input.copies.filter((c) => c.pgAddress !== null && !(input.ignore?.(c) ?? false));
  for (const c of input.copies) {
    if (!live.includes(c)) problems.push(`${c.node} (${c.role}) not checked: ${c.pgAddress === null ? 'not running' : 'excluded'}`);
  }
  const settledMs = await settle(input, live);
  const data = new Map<CopyRef, Map<number, number>>();
  const reports: CopyReport[] = [];
  for (const c of live) {
    try {
      data.set(c, await readCopy(c, input.range));
    } catch (e) {
      problems.push(`${c.node}: cannot read votes: ${(e as Error).message}`);
      reports.push({ shard: c.shard, node: c.node, role: c.role, votes: null, missing: 0, wrongChoice: 0, extra: 0, counts: {}, error: (e as Error).message });
    }
  }

  const lostVoters = new Set<number>();
  const lostOnPrimary = new Set<number>();
  const divergentVoters = new Set<number>();
  let unacknowledgedStored = 0;
  let unexpected = 0;
  const shardOfStored = new Map<number, Set<number>>();
  const tallies: VerifyResult['tallies'] = [];

  const shards = [...new Set(input.copies.map((c) => c.shard))].sort((a, b) => a - b);
  for (const s of shards) {
    const copies = live.filter((c) => c.shard === s && data.has(c));
    const primary = copies.find((c) => c.role === 'primary');
    const acked = [...input.acknowledged].filter(([id]) => input.shardOf(id) === s);
    const counts: Record<string, Record<string, number>> = {};
    for (const c of copies) {
      const m = data.get(c)!;
      let missing = 0;
      let wrongChoice = 0;
      for (const [id, choice] of acked) {
        const got = m.get(id);
        if (got === undefined) {
          missing++;
          lostVoters.add(id);
          if (c === primary) lostOnPrimary.add(id);
        } else if (got !== choice) {
          wrongChoice++;
          divergentVoters.add(id);
        }
      }
      const cnt: Record<string, number> = {};
      for (const [id, choice] of m) {
        cnt[choice] = (cnt[choice] ?? 0) + 1;
        (shardOfStored.get(id) ?? shardOfStored.set(id, new Set()).get(id)!).add(s);
      }
      counts[c.node] = cnt;
      let extra = 0;
      if (primary && c !== primary) {
        const pm = data.get(primary)!;
        for (const [id, choice] of m) {
          if (pm.get(id) !== choice) {
            extra++;
            divergentVoters.add(id);
          }
        }
        for (const id of pm.keys()) if (!m.has(id)) divergentVoters.add(id);
      }
      reports.push({ shard: s, node: c.node, role: c.role, votes: m.size, missing, wrongChoice, extra, counts: cnt });
    }
    // stored votes that were never acknowledged
    const ref = primary ? data.get(primary)! : copies[0] ? data.get(copies[0])! : new Map<number, number>();
    for (const id of ref.keys()) {
      if (input.acknowledged.has(id)) continue;
      if (input.unknown.has(id)) unacknowledgedStored++;
      else unexpected++;
    }
    const keys = Object.values(counts).map((c) => JSON.stringify(Object.entries(c).sort()));
    tallies.push({ shard: s, agree: keys.every((k) => k === keys[0]), counts });
    if (!primary) problems.push(`shard ${s}: its primary could not be checked`);
  }
  let duplicated = input.acknowledgedTwice;
  for (const set of shardOfStored.values()) if (set.size > 1) duplicated++;
  if (unexpected > 0) problems.push(`${unexpected} stored vote(s) were neither acknowledged nor in flight`);
  const lost = lostVoters.size;
  const divergent = divergentVoters.size;
  return {
    ok: lost === 0 && duplicated === 0 && divergent === 0 && unexpected === 0 && tallies.every((t) => t.agree),
    lost,
    lostOnPrimary: lostOnPrimary.size,
    duplicated,
    divergent,
    unacknowledgedStored,
    unexpected,
    tallies,
    copies: reports,
    settledMs,
    problems,
  };
}
