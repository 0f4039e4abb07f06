// Issue 5 acceptance, failover, on real processes and real PostgreSQL: for
// each replication mode, load one shard (primary + 2 replicas) with votes
// (1 % duplicate voters), SIGKILL its primary and delete its data directory
// mid-load, bring the node back empty, and read every copy afterwards.
//   log, sync  every acknowledged vote on the new primary and every replica,
//              none twice; the wiped node rejoins as a replica.
//   async      votes may be lost; the managers record how many were at risk
//              at the failover, and no more than that are lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { bench, expectNothingLost, expectRejoined, failoverCluster, killPrimaryAndWipe, record, up, waitForVotes, type FailoverCluster } from './shard-failover.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-failover-'));
const clusters: FailoverCluster[] = [];

afterAll(async () => {
  for (const c of clusters) await dvote(['--cluster', c.cluster, 'down', '--volumes'], c.env);
  rmSync(stateDir, { recursive: true, force: true });
});

const VOTES = 8_000;

async function runWithFailover(mode: 'log' | 'sync' | 'async') {
  const c = failoverCluster(`fo-${mode}-${process.pid % 10000}`, stateDir, mode);
  clusters.push(c);
  await up(c);
  const load = bench(c, VOTES);
  await waitForVotes(c, 1_500);
  const killed = await killPrimaryAndWipe(c, 2_000);
  const { result, doc } = await load;
  return { c, killed, result, doc };
}

describe('shard failover on local processes: SIGKILL the primary and delete its data mid-load', () => {
  for (const mode of ['log', 'sync'] as const) {
    it(`${mode}: every acknowledged vote survives on the new primary and every replica, none twice`, async () => {
      const { c, killed, result, doc } = await runWithFailover(mode);
      expectNothingLost(doc);
      expect(result.code).toBe(0);
      // Votes kept flowing: most of the load was acknowledged despite the failover.
      expect(doc.votes.acknowledged).toBeGreaterThan(VOTES * 0.5);
      const rec = await expectRejoined(c, killed);
      expect(rec.mode).toBe(mode);
    }, 400_000);
  }

  it('async: votes may be lost, and the managers report how many were at risk at the failover', async () => {
    const { c, killed, doc } = await runWithFailover('async');
    const rec = await expectRejoined(c, killed);
    const failover = rec.history.find((h) => h.epoch === 2)!;
    console.log(`async failover: ${doc.votes.acknowledged} acknowledged, ${failover.atRisk} at risk at the failover, ${doc.verify.lost} lost`);
    expect(typeof failover.atRisk).toBe('number');
    expect(rec.atRiskAtFailovers ?? 0).toBe(failover.atRisk);
    // What was lost is what was at risk, no more; nothing is counted twice.
    expect(doc.verify.lost).toBeLessThanOrEqual(failover.atRisk!);
    expect(doc.verify.duplicated).toBe(0);
    // Copies agree with each other once settled, whatever was lost.
    expect(doc.verify.tallies.every((t) => t.agree)).toBe(true);
    // status shows it per shard.
    const st = await dvote(['--cluster', c.cluster, 'status', '--json'], c.env);
    const sh = (st.json as { shards: { atRiskAtFailovers: number }[] }).shards[0]!;
    expect(sh.atRiskAtFailovers).toBe(failover.atRisk);
    expect((await record(c)).epoch).toBeGreaterThanOrEqual(2);
  }, 400_000);
});
