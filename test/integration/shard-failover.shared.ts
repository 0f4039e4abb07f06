// Issue 5 part B acceptance on the process runtime, through the real CLI,
// shared by the per-mode failover test files: concurrent votes with 1%
// duplicate voters while the shard's primary is SIGKILLed and its data
// directory deleted mid-load; the managers fail over; `dvote up` brings the
// node back, empty, and it is seeded again as a replica. `dvote bench --json`
// drives the load and reads every copy afterwards.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ShardRecord } from '../../src/core/shard-records.js';
import { ProcessRuntime } from '../../src/runtime/process.js';
import { describeResult, dvote, type CliResult } from '../utils/cli.js';

export interface FailoverCluster {
  cluster: string;
  stateDir: string;
  env: Record<string, string>;
  upArgs: string[];
  runtime: ProcessRuntime;
}

export interface BenchDoc {
  votes: { sent: number; acknowledged: number; rejected: number; failed: number; unknownOutcome: number };
  throughput: { votesPerSec: number };
  latencyMs: { p50: number; p99: number; max: number };
  verify: { ok: boolean; lost: number; lostOnPrimary: number; duplicated: number; divergent: number; unexpected: number; tallies: { agree: boolean }[]; copies: { node: string; role: string; votes: number | null }[]; problems: string[] };
  atRisk: number | null;
}

export function failoverCluster(name: string, stateDir: string, mode: 'log' | 'sync' | 'async', replicas = 2): FailoverCluster {
  return {
    cluster: name,
    stateDir,
    env: { DVOTE_STATE_DIR: stateDir },
    upArgs: ['up', '--runtime', 'process', '--managers', '1', '--brokers', '1', '--shards', '1', '--replicas', String(replicas), '--replication', mode],
    runtime: new ProcessRuntime({ stateDir }),
  };
}

export function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`dvote failed: ${describeResult(r)}`);
  return r;
}

export async function up(c: FailoverCluster): Promise<CliResult> {
  return ok(await dvote(['--cluster', c.cluster, ...c.upArgs], c.env));
}

/** Start `dvote bench --json` (not awaited): votes from a fresh id range, 1% duplicate voters. */
export function bench(c: FailoverCluster, votes: number, extra: string[] = []): Promise<{ result: CliResult; doc: BenchDoc }> {
  return dvote(['--cluster', c.cluster, 'bench', '--votes', String(votes), '--concurrency', '32', '--duplicates', '0.01', '--settle', '60s', '--json', ...extra], c.env, 300_000).then((result) => {
    if (!result.json) throw new Error(`bench printed no JSON: ${describeResult(result)}`);
    return { result, doc: result.json as unknown as BenchDoc };
  });
}

export async function record(c: FailoverCluster, shard = 1): Promise<ShardRecord> {
  const managers = (await c.runtime.listNodes(c.cluster)).filter((n) => n.role === 'manager');
  const res = await fetch(`${managers[0]!.endpoint}/v1/shards/${shard}`);
  return (await res.json()) as ShardRecord;
}

export async function waitUntil<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Wait until `votes` have been acknowledged by the cluster (counted on the primary). */
export async function waitForVotes(c: FailoverCluster, votes: number): Promise<void> {
  await waitUntil(`${votes} votes on the primary`, async () => {
    const r = await dvote(['--cluster', c.cluster, 'status', '--json'], c.env);
    const doc = r.json as { shards?: { copies: { role: string; votes: number | null }[] }[] } | null;
    const p = doc?.shards?.[0]?.copies.find((x) => x.role === 'primary');
    return (p?.votes ?? 0) >= votes;
  });
}

/**
 * SIGKILL shard 1's primary through the alias, delete its data directory,
 * wait `downMs`, and bring it back with `dvote up`. Returns the killed node.
 */
export async function killPrimaryAndWipe(c: FailoverCluster, downMs: number): Promise<string> {
  const k = ok(await dvote(['--cluster', c.cluster, 'kill', 'shard-1-primary', '--json'], c.env));
  const target = (k.json as { targets: { name: string }[] }).targets[0]!.name;
  rmSync(join(c.stateDir, 'clusters', c.cluster, 'nodes', target, 'data'), { recursive: true, force: true });
  await new Promise((r) => setTimeout(r, downMs));
  await up(c);
  return target;
}

/** Log and sync: every acknowledged vote on every copy, none twice, copies agree. */
export function expectNothingLost(doc: BenchDoc): void {
  const v = doc.verify;
  expect(v.problems.filter((p) => !/not checked/.test(p)), JSON.stringify(v.problems)).toEqual([]);
  expect({ lost: v.lost, duplicated: v.duplicated, divergent: v.divergent, unexpected: v.unexpected }).toEqual({ lost: 0, duplicated: 0, divergent: 0, unexpected: 0 });
  expect(v.ok).toBe(true);
  expect(v.tallies.every((t) => t.agree)).toBe(true);
  expect(doc.votes.acknowledged).toBeGreaterThan(0);
}

/** The killed primary comes back empty, is seeded again and rejoins as a replica; all copies agree. */
export async function expectRejoined(c: FailoverCluster, killed: string): Promise<ShardRecord> {
  const rec = await waitUntil(`${killed} to rejoin as a replica`, async () => {
    const r = await record(c);
    return r.replicas.includes(killed) ? r : null;
  });
  expect(rec.primary).not.toBe(killed);
  expect(rec.epoch).toBeGreaterThanOrEqual(2);
  expect(rec.fenced).toEqual([]);
  const failover = rec.history.find((h) => h.epoch === 2);
  expect(failover?.reason).toMatch(new RegExp(`failover: primary ${killed} (is dead|lost its data)`));
  expect(rec.history.some((h) => h.reason.startsWith(`${killed} rejoined as a replica`))).toBe(true);
  // every copy holds the same votes once the replicas settle
  await waitUntil('every copy to agree (dvote tally --verify)', async () => (await dvote(['--cluster', c.cluster, 'tally', '--verify', '--json'], c.env)).code === 0);
  return rec;
}
