// The voting-shard acceptance flow (issue 5, part A) through the real CLI and
// the real API, shared by the process and docker runtime test files: up with
// 2 shards, votes by CLI and API, duplicates, bad input that stores nothing,
// concurrent votes with 1% duplicate voters, tally, restarts that lose nothing.
import pg from 'pg';
import { request as httpRequest } from 'node:http';
import { expect, it } from 'vitest';
import { VoteClient } from '../../src/client/vote-client.js';
import { ShardDirectory } from '../../src/client/shard-directory.js';
import { BrokerClient } from '../../src/client/broker-client.js';
import { partitionOf, VOTE_TOPIC } from '../../src/core/shard-records.js';
import { planApply } from '../../src/services/shard/vote-log-codec.js';
import { hashSlot, ShardRouter } from '../../src/core/shard-map.js';
import type { ObservedNode, Runtime } from '../../src/runtime/runtime.js';
import { pgConnection } from '../../src/services/postgres/pg-schema.js';
import { describeResult, dvote, type CliResult } from '../utils/cli.js';

export interface FlowOptions {
  cluster: string;
  env: Record<string, string>;
  runtime: Runtime;
  upArgs: string[];
}

export function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`dvote failed: ${describeResult(r)}`);
  return r;
}

export async function nodes(o: FlowOptions): Promise<ObservedNode[]> {
  return o.runtime.listNodes(o.cluster);
}

/** Rows of the votes table of one PostgreSQL node, straight from the database. */
export async function votesOn(node: ObservedNode): Promise<Map<number, number>> {
  const c = new pg.Client({ ...pgConnection(node.pgAddress!, 'test-check'), connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    const r = await c.query<{ voter_id: number; choice: number }>('SELECT voter_id, choice FROM votes');
    return new Map(r.rows.map((x) => [x.voter_id, x.choice]));
  } finally {
    await c.end();
  }
}

export async function allVotes(o: FlowOptions): Promise<Map<string, Map<number, number>>> {
  const out = new Map<string, Map<number, number>>();
  for (const n of (await nodes(o)).filter((x) => x.role === 'postgres')) out.set(n.name, await votesOn(n));
  return out;
}

export async function totalOnPrimaries(o: FlowOptions): Promise<number> {
  let n = 0;
  for (const [name, votes] of await allVotes(o)) if (name.endsWith('-pg-1')) n += votes.size;
  return n;
}

export async function voteClient(o: FlowOptions): Promise<VoteClient> {
  const ns = await nodes(o);
  const byName = new Map(ns.map((n) => [n.name, n]));
  const managers = ns.filter((n) => n.role === 'manager').map((n) => n.endpoint);
  return new VoteClient({ managers, endpointOf: (name, adv) => byName.get(name)?.endpoint ?? `http://${adv}`, connections: 16 });
}

/**
 * POST with node:http, which reads the answer to an oversized body even when
 * the server closes the connection before the whole body was written (it
 * answers 413 at once; the rest of the write then fails with EPIPE).
 */
function post(url: string, body: string, contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } }, (res) => {
      answered = true;
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
      res.on('error', reject);
    });
    req.on('error', (e) => {
      if (!answered) setTimeout(() => (answered ? undefined : reject(e)), 200);
    });
    req.end(body);
  });
}

/** Registers the flow's tests (call inside a describe whose beforeAll ran `up`). */
export function shardFlowTests(get: () => FlowOptions): void {
  const base = () => ['--cluster', get().cluster];

  it('every PostgreSQL node is a primary and every shard service serves; status is healthy', async () => {
    const r = await dvote([...base(), 'status', '--json'], get().env);
    const doc = r.json as { healthy: boolean; nodes: { name: string; role: string; state: string; healthy: boolean }[] };
    expect(doc.healthy, describeResult(r)).toBe(true);
    const pgs = doc.nodes.filter((n) => n.role === 'postgres');
    const svcs = doc.nodes.filter((n) => n.role === 'shard');
    expect(pgs.map((n) => [n.name, n.state])).toEqual([
      ['shard-1-pg-1', 'primary'],
      ['shard-2-pg-1', 'primary'],
    ]);
    expect(svcs.map((n) => [n.name, n.state])).toEqual([
      ['shard-1-svc', 'serving'],
      ['shard-2-svc', 'serving'],
    ]);
  });

  it('the managers hold the shard map and one record per shard (epoch 1, pg-1 primary, partition s-1)', async () => {
    const ns = await nodes(get());
    const dir = new ShardDirectory({ managers: ns.filter((n) => n.role === 'manager').map((n) => n.endpoint) });
    try {
      const snap = await dir.refresh();
      expect(snap.shardMap).toMatchObject({ kind: 'hash', slots: 1024, shards: 2 });
      expect(snap.shards.map((s) => [s.shard, s.epoch, s.primary, s.partition, s.service])).toEqual([
        [1, 1, 'shard-1-pg-1', 0, 'shard-1-svc'],
        [2, 1, 'shard-2-pg-1', 1, 'shard-2-svc'],
      ]);
      expect(snap.topology?.shards).toBe(2);
    } finally {
      await dir.stop();
    }
  });

  it('dvote vote: 0 when stored, 1 for a second vote (the first stands), 2 for bad input with nothing stored', async () => {
    const o = get();
    const v1 = await dvote([...base(), 'vote', '1001', 'Democrats', '--json'], o.env);
    expect(v1.code, describeResult(v1)).toBe(0);
    expect(v1.json).toMatchObject({ schema: 'dvote.vote/v1', voterId: 1001, status: 'accepted', choice: 'Democrats', epoch: 1 });
    const v2 = await dvote([...base(), 'vote', '1001', 'republicans', '--json'], o.env);
    expect(v2.code, describeResult(v2)).toBe(1);
    expect(v2.json).toMatchObject({ status: 'already-voted', choice: 'Democrats' });
    const human = await dvote([...base(), 'vote', '1002', '3'], o.env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/voter 1002: Protest vote recorded on shard \d/);

    const before = await totalOnPrimaries(o);
    const bad: [string, string, RegExp][] = [
      ['abc', 'Democrats', /not a whole number/],
      ['', 'Democrats', /empty/],
      ['0', 'Democrats', /outside the voter id range/],
      ['99999999999999999999', 'Democrats', /outside the voter id range/],
      ['-5', 'Democrats', /not a whole number/],
      ['1003', 'Greens', /not on the ballot/],
      ['1003', '0', /not a position on the ballot/],
      ['1003', '', /empty/],
    ];
    for (const [id, choice, msg] of bad) {
      const r = await dvote([...base(), 'vote', id, choice], o.env);
      expect(r.code, `${id} ${choice}: ${describeResult(r)}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    expect(await totalOnPrimaries(o)).toBe(before);
    const stored = await allVotes(o);
    expect([...stored.values()].some((m) => m.has(1003))).toBe(false);
    expect([...stored.values()].find((m) => m.has(1001))?.get(1001)).toBe(1);
  }, 120_000);

  it('the API refuses malformed JSON, unknown choices, empty/absurd ids, wrong shards and oversized bodies with 4xx, storing nothing', async () => {
    const o = get();
    const ns = await nodes(o);
    const svc = ns.find((n) => n.name === 'shard-1-svc')!.endpoint;
    const before = await totalOnPrimaries(o);
    const cases: [string, string, number, RegExp][] = [
      ['/votes', '{"voterId": 5, "choice": "Democrats"', 400, /malformed JSON/],
      ['/votes', '', 400, /empty/],
      ['/votes', 'null', 400, /JSON object/],
      ['/votes', '[1,2]', 400, /JSON object/],
      ['/votes', '{"voterId": 5, "choice": "Greens"}', 400, /not on the ballot/],
      ['/votes', '{"voterId": "", "choice": 1}', 400, /not the string/],
      ['/votes', '{"choice": 1}', 400, /voterId: missing/],
      ['/votes', '{"voterId": 1e30, "choice": 1}', 400, /too large/],
      ['/votes', '{"voterId": 99999999999, "choice": 1}', 400, /outside the voter id range/],
      ['/votes', '{"voterId": -1, "choice": 1}', 400, /outside/],
      ['/votes', '{"voterId": 2.5, "choice": 1}', 400, /not a whole number/],
      ['/votes', `{"voterId": 6, "choice": "${'x'.repeat(5000)}"}`, 413, /too large/],
      ['/votes/batch', JSON.stringify({ votes: Array.from({ length: 20_000 }, (_, i) => ({ voterId: i + 1, choice: 1 })) }), 413, /too large/],
      ['/votes/batch', JSON.stringify({ votes: Array.from({ length: 1001 }, (_, i) => ({ voterId: i + 1, choice: 1 })) }), 413, /at most 1000/],
      ['/votes/batch', '{"votes": {}}', 400, /"votes"/],
      ['/votes/batch', '{"votes": []}', 400, /empty/],
    ];
    for (const [path, body, status, msg] of cases) {
      const r = await post(`${svc}${path}`, body);
      expect(r.status, `${path} ${body.slice(0, 60)} -> ${JSON.stringify(r.body).slice(0, 300)}`).toBe(status);
      expect(String(r.body.error)).toMatch(msg);
    }
    const wrongType = await post(`${svc}/votes`, '{"voterId": 5, "choice": 1}', 'text/plain');
    expect(wrongType.status).toBe(415);
    // a voter of the other shard is refused with 421 and the right shard
    const router = new ShardRouter({ version: 1, kind: 'hash', slots: 1024, shards: 2, ranges: [{ first: 0, last: 511, shard: 1 }, { first: 512, last: 1023, shard: 2 }] });
    const foreign = Array.from({ length: 100 }, (_, i) => 2000 + i).find((id) => router.shardOf(id) === 2)!;
    expect(hashSlot(foreign)).toBeGreaterThanOrEqual(512);
    const mis = await post(`${svc}/votes`, JSON.stringify({ voterId: foreign, choice: 1 }));
    expect(mis.status).toBe(421);
    expect(mis.body.shard).toBe(2);
    expect(await totalOnPrimaries(o)).toBe(before);
  });

  it('GET /votes/:id and /tally answer from the primary', async () => {
    const c = await voteClient(get());
    try {
      const v = await c.getVote(1001);
      expect(v).toMatchObject({ found: true, choice: 'Democrats', choiceIndex: 1 });
      expect(await c.getVote(987654321)).toMatchObject({ found: false });
      const t = await c.tally();
      expect(t.complete).toBe(true);
      expect(t.total).toBe(await totalOnPrimaries(get()));
    } finally {
      await c.close();
    }
  });

  it('concurrent votes with 1% duplicate voters: each voter counted once, with the first choice, on its shard', async () => {
    const o = get();
    const c = await voteClient(o);
    const voters = 3000;
    const first = 100_000;
    const requests: { voterId: number; choice: number }[] = [];
    for (let i = 0; i < voters; i++) {
      requests.push({ voterId: first + i, choice: 1 + (i % 3) });
      if (i % 100 === 50) requests.push({ voterId: first + i - 25, choice: 1 + ((i - 25 + 1) % 3) });
    }
    const accepted = new Map<number, number>();
    const duplicates: { voterId: number; choice: number | undefined }[] = [];
    let failed = 0;
    const t0 = performance.now();
    try {
      // half as single votes from 32 concurrent senders, half in batches of 100
      const half = Math.floor(requests.length / 2);
      const singles = requests.slice(0, half);
      const batched = requests.slice(half);
      let next = 0;
      const record = (r: { voterId: number | string; status: string; choiceIndex?: number }) => {
        if (r.status === 'accepted') accepted.set(Number(r.voterId), r.choiceIndex!);
        else if (r.status === 'already-voted') duplicates.push({ voterId: Number(r.voterId), choice: r.choiceIndex });
        else failed++;
      };
      await Promise.all([
        ...Array.from({ length: 32 }, async () => {
          while (next < singles.length) {
            const v = singles[next++]!;
            record(await c.vote(v.voterId, v.choice));
          }
        }),
        (async () => {
          for (let k = 0; k < batched.length; k += 100) for (const r of await c.voteBatch(batched.slice(k, k + 100))) record(r);
        })(),
      ]);
    } finally {
      await c.close();
    }
    const ms = performance.now() - t0;
    console.log(`${get().cluster}: ${requests.length} votes in ${ms.toFixed(0)} ms (${Math.round((requests.length / ms) * 1000)}/s), ${accepted.size} accepted, ${duplicates.length} duplicates`);
    expect(failed).toBe(0);
    expect(accepted.size).toBe(voters);
    expect(duplicates).toHaveLength(requests.length - voters);
    for (const d of duplicates) expect(d.choice).toBe(accepted.get(d.voterId));
    const stored = await allVotes(o);
    const router = new ShardRouter({ version: 1, kind: 'hash', slots: 1024, shards: 2, ranges: [{ first: 0, last: 511, shard: 1 }, { first: 512, last: 1023, shard: 2 }] });
    let seen = 0;
    for (const [node, votes] of stored) {
      const shard = Number(/^shard-(\d+)-/.exec(node)![1]);
      for (const [id, choice] of votes) {
        if (id < first || id >= first + voters) continue;
        seen++;
        expect(router.shardOf(id), `voter ${id} on ${node}`).toBe(shard);
        expect(choice).toBe(accepted.get(id));
      }
    }
    expect(seen).toBe(voters); // each voter exactly once across the primaries
  }, 180_000);

  it('every vote stored on a primary is in its shard\'s vote log partition (none without brokers), and the outbox drains', async () => {
    const o = get();
    const ns = await nodes(o);
    const managers = ns.filter((n) => n.role === 'manager').map((n) => n.endpoint);
    const dir = new ShardDirectory({ managers });
    const snap = await dir.refresh();
    await dir.stop();
    const brokers = snap.topology!.brokers;
    const brokerClient = brokers > 0 ? new BrokerClient({ managers, timeoutMs: 10_000 }) : null;
    try {
      for (const rec of snap.shards) {
        const primary = ns.find((n) => n.name === rec.primary)!;
        const c = new pg.Client(pgConnection(primary.pgAddress!, 'test-check'));
        await c.connect();
        try {
          const outboxRows = async () => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox')).rows[0]!.n);
          if (!brokerClient) {
            expect(await outboxRows(), rec.primary).toBe(0);
            continue;
          }
          // The primary's applier deletes outbox rows once it meets them in the log.
          for (let i = 0; i < 100 && (await outboxRows()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
          expect(await outboxRows(), `${rec.primary}'s outbox`).toBe(0);
          const votes = (await c.query<{ voter_id: string; choice: number }>('SELECT voter_id::text, choice FROM votes')).rows;
          const entries: Uint8Array[] = [];
          for (let from = 0; ; ) {
            const r = await brokerClient.fetch(VOTE_TOPIC, partitionOf(rec.shard), from, { maxMessages: 5_000 });
            entries.push(...r.messages.map((m) => m.value));
            from += r.messages.length;
            if (from >= r.highWatermark || r.messages.length === 0) break;
          }
          const plan = planApply(entries, { epoch: 0, writer: 0 });
          const inLog = new Map(plan.votes.map((v) => [v.voterId, v.choice]));
          const onPrimary = new Map(votes.map((v) => [Number(v.voter_id), v.choice]));
          expect(inLog.size, `shard ${rec.shard}: votes counted from the log vs on ${rec.primary}`).toBe(onPrimary.size);
          for (const [id, choice] of onPrimary) expect(inLog.get(id), `voter ${id}`).toBe(choice);
        } finally {
          await c.end();
        }
      }
    } finally {
      await brokerClient?.close();
    }
  });

  it('dvote tally --json: per shard and total, every copy agreeing with its primary', async () => {
    const o = get();
    const r = await dvote([...base(), 'tally', '--json', '--verify'], o.env);
    expect(r.code, describeResult(r)).toBe(0);
    const doc = r.json as { schema: string; total: number; complete: boolean; consistent: boolean; counts: Record<string, number>; shards: { shard: number; total: number; copies: { node: string; role: string; total: number; agrees: boolean }[] }[] };
    expect(doc.schema).toBe('dvote.tally/v1');
    expect(doc.complete).toBe(true);
    expect(doc.consistent).toBe(true);
    expect(doc.total).toBe(await totalOnPrimaries(o));
    expect(Object.keys(doc.counts)).toEqual(['Democrats', 'Republicans', 'Protest vote']);
    expect(doc.shards.map((s) => s.copies.map((c) => [c.node, c.role, c.agrees]))).toEqual([[['shard-1-pg-1', 'primary', true]], [['shard-2-pg-1', 'primary', true]]]);
    const human = await dvote([...base(), 'tally'], o.env);
    expect(human.stdout).toMatch(/every copy agrees with its primary/);
  });

  it('a restarted shard service and a killed-then-restarted PostgreSQL lose nothing', async () => {
    const o = get();
    const before = await allVotes(o);
    ok(await dvote([...base(), 'kill', 'shard-1-svc'], o.env));
    ok(await dvote([...base(), 'kill', 'shard-2-pg-1'], o.env));
    const r = await dvote([...base(), ...o.upArgs], o.env);
    expect(r.code, describeResult(r)).toBe(0);
    const after = await allVotes(o);
    for (const [node, votes] of before) expect(after.get(node), node).toEqual(votes);
    const c = await voteClient(o);
    try {
      const again = await c.vote(1001, 'Republicans');
      expect(again).toMatchObject({ status: 'already-voted', choice: 'Democrats' });
      const fresh = await c.voteBatch(Array.from({ length: 20 }, (_, i) => ({ voterId: 500_000 + i, choice: 'Protest vote' })));
      expect(fresh.every((x) => x.status === 'accepted')).toBe(true);
    } finally {
      await c.close();
    }
  }, 180_000);
}
