// Issue 5 part A on the process runtime, through the real CLI: two voting
// shards (PostgreSQL from the npm package, supervised by our node program),
// then the DisVote preset with its parity shard map.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRuntime } from '../../src/runtime/process.js';
import { pgConnection } from '../../src/services/postgres/pg-schema.js';
import { dvote, describeResult } from '../utils/cli.js';
import { allVotes, ok, shardFlowTests, voteClient, type FlowOptions } from './shard-flow.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-shard-proc-'));
const env = { DVOTE_STATE_DIR: stateDir };
const cluster = `sp${process.pid % 10000}`;
const parity = `${cluster}-par`;
// Replication "log" (the default) with one broker: part A acknowledges after
// the primary commit and fills the outbox; part B ships it through the broker.
const upArgs = ['up', '--runtime', 'process', '--managers', '1', '--brokers', '1', '--shards', '2', '--replicas', '0'];

afterAll(async () => {
  await dvote(['--cluster', cluster, 'down', '--volumes'], env);
  await dvote(['--cluster', parity, 'down', '--volumes'], env);
  rmSync(stateDir, { recursive: true, force: true });
});

describe('voting shards on local processes', () => {
  const opts: FlowOptions = { cluster, env, runtime: new ProcessRuntime({ stateDir }), upArgs };

  beforeAll(async () => {
    const r = ok(await dvote(['--cluster', cluster, ...upArgs, '--json'], env));
    const phases = (r.json?.phases as { name: string }[]).map((p) => p.name);
    expect(phases).toEqual(expect.arrayContaining(['start managers', 'start PostgreSQL nodes', 'start shard services']));
  }, 240_000);

  shardFlowTests(() => opts);
});

describe('the DisVote preset (templates/topology/disvote-2shards.yaml) on local processes', () => {
  const opts: FlowOptions = { cluster: parity, env, runtime: new ProcessRuntime({ stateDir }), upArgs: [] };

  it('comes up with the parity map and a replica per shard, and puts even voters on shard 1, odd on shard 2', async () => {
    // The preset as written (parity map, async replication, the original
    // ballot), smaller to fit a 2-core machine: 1 manager, 1 broker, 1 replica.
    const r = await dvote(
      ['--cluster', parity, 'up', '-f', 'templates/topology/disvote-2shards.yaml', '--runtime', 'process', '--managers', '1', '--brokers', '1', '--replicas', '1', '--json'],
      env,
    );
    expect(r.code, describeResult(r)).toBe(0);
    expect(r.json?.topology).toMatchObject({ shardMap: 'parity', shards: 2, replicas: 1, replication: 'async', ballot: ['Democrats', 'Republicans', 'Protest vote'] });
    const c = await voteClient(opts);
    try {
      const results = await c.voteBatch(Array.from({ length: 40 }, (_, i) => ({ voterId: 7000 + i, choice: 1 + (i % 3) })));
      expect(results.every((x) => x.status === 'accepted')).toBe(true);
      for (const x of results) expect(x.shard).toBe(Number(x.voterId) % 2 === 0 ? 1 : 2);
    } finally {
      await c.close();
    }
    const stored = await allVotes(opts);
    expect([...stored.get('shard-1-pg-1')!.keys()].every((id) => id % 2 === 0)).toBe(true);
    expect([...stored.get('shard-2-pg-1')!.keys()].every((id) => id % 2 === 1)).toBe(true);
    expect(stored.get('shard-1-pg-1')!.size).toBe(20);
    expect(stored.get('shard-2-pg-1')!.size).toBe(20);
    // Each replica applies its shard's vote log: once settled, every copy agrees.
    let t = await dvote(['--cluster', parity, 'tally', '--json', '--verify'], env);
    for (let i = 0; i < 50 && t.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      t = await dvote(['--cluster', parity, 'tally', '--json', '--verify'], env);
    }
    expect(t.code, describeResult(t)).toBe(0);
    expect(t.json).toMatchObject({ complete: true, consistent: true, total: 40 });
    const copies = (t.json!.shards as { copies: { node: string; role: string; total: number; agrees: boolean }[] }[]).flatMap((s) => s.copies);
    expect(copies.map((x) => [x.node, x.role, x.total, x.agrees])).toEqual([
      ['shard-1-pg-1', 'primary', 20, true],
      ['shard-1-pg-2', 'replica', 20, true],
      ['shard-2-pg-1', 'primary', 20, true],
      ['shard-2-pg-2', 'replica', 20, true],
    ]);
  }, 240_000);

  it('promote (the failover primitive): CAS on the epoch, the copies follow, the old primary is fenced, re-seeded and rejoins as a replica', async () => {
    const ns = await opts.runtime.listNodes(parity);
    const manager = ns.find((n) => n.role === 'manager')!.endpoint;
    const promote = async (body: unknown) => {
      const res = await request(`${manager}/v1/shards/1/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
    };
    expect((await promote({ primary: 'shard-1-pg-2', epoch: 7 })).status).toBe(409);
    expect((await promote({ primary: 'shard-1-pg-9', epoch: 1 })).status).toBe(409);
    const ok1 = await promote({ primary: 'shard-1-pg-2', epoch: 1, reason: 'test' });
    expect(ok1.status, JSON.stringify(ok1.body)).toBe(200);
    expect(ok1.body).toMatchObject({ epoch: 2, primary: 'shard-1-pg-2', replicas: [], fenced: ['shard-1-pg-1'] });
    // a restarted PostgreSQL makes `up` init the records again: the promotion stays
    ok(await dvote(['--cluster', parity, 'kill', 'shard-1-pg-1'], env));
    const again = await dvote(['--cluster', parity, 'up', '-f', 'templates/topology/disvote-2shards.yaml', '--runtime', 'process', '--managers', '1', '--brokers', '1', '--replicas', '1'], env);
    expect(again.code, describeResult(again)).toBe(0);
    expect((again.stderr.match(/start PostgreSQL nodes/g) ?? []).length).toBeGreaterThan(0);
    const states = async () => Object.fromEntries((await opts.runtime.listNodes(parity)).filter((n) => n.role === 'postgres' && n.name.startsWith('shard-1-')).map((n) => [n.name, n]));
    // both copies follow the record into their fences
    const meta = async (name: string) => {
      const n = (await states())[name]!;
      const c = new pg.Client(pgConnection(n.pgAddress!, 'test'));
      await c.connect();
      try {
        return Object.fromEntries((await c.query<{ key: string; value: string }>('SELECT key, value FROM meta')).rows.map((r) => [r.key, r.value]));
      } finally {
        await c.end();
      }
    };
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && ((await meta('shard-1-pg-2')).role !== 'primary' || (await meta('shard-1-pg-1')).role !== 'replica')) await new Promise((r) => setTimeout(r, 200));
    expect(await meta('shard-1-pg-2')).toMatchObject({ role: 'primary', epoch: '2' });
    // the deposed primary was fenced, seeded again from a live copy, and rejoined as a replica
    expect(await meta('shard-1-pg-1')).toMatchObject({ role: 'replica', epoch: '2', copy: 'ready' });
    const rec = (await (await request(`${manager}/v1/shards/1`)).body.json()) as { replicas: string[]; fenced: string[]; history: { reason: string }[] };
    expect(rec).toMatchObject({ replicas: ['shard-1-pg-1'], fenced: [] });
    expect(rec.history.some((h) => h.reason.startsWith('shard-1-pg-1 rejoined as a replica'))).toBe(true);
    // the old primary refuses writes at any epoch
    const old = new pg.Client(pgConnection((await states())['shard-1-pg-1']!.pgAddress!, 'test'));
    await old.connect();
    await expect(old.query('INSERT INTO votes (voter_id, choice) SELECT 8888, 1 WHERE (SELECT dvote_assert_writable(1))')).rejects.toMatchObject({ code: 'DV001' });
    await old.end();
    // the shard service now writes to the new primary, under epoch 2, and the old one applies it from the log
    const c = await voteClient(opts);
    try {
      const r = await c.vote(8000, 'Republicans');
      expect(r).toMatchObject({ status: 'accepted', shard: 1, epoch: 2 });
    } finally {
      await c.close();
    }
    let stored = await allVotes(opts);
    for (let i = 0; i < 50 && !stored.get('shard-1-pg-1')!.has(8000); i++) {
      await new Promise((r) => setTimeout(r, 200));
      stored = await allVotes(opts);
    }
    expect(stored.get('shard-1-pg-2')!.get(8000)).toBe(2);
    expect(stored.get('shard-1-pg-1')!.get(8000)).toBe(2);
    expect(stored.get('shard-1-pg-1')!.size).toBe(stored.get('shard-1-pg-2')!.size);
  }, 120_000);
});
