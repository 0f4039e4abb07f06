// Issue 6 acceptance, shared by the process and docker files: a short bench
// (a few thousand votes) with one injected primary kill, verified with zero
// loss by reading every copy; the JSON documents of bench and report validate
// against the documented contracts and pass through jq.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BenchV1, ReportV1, StatusV1, contractProblems } from '../../src/core/json-contracts.js';
import { DVOTE_BIN, describeResult, dvote } from '../utils/cli.js';
import type { BenchDoc } from '../../src/bench/vote-bench.js';

export function benchAcceptanceFlow(rt: 'docker' | 'process', cluster: string, env: Record<string, string>): void {
  const base = ['--cluster', cluster];

  describe(`dvote bench on ${rt}`, () => {
    beforeAll(async () => {
      const r = await dvote([...base, 'up', '--runtime', rt, '--managers', '3', '--brokers', '3', '--shards', '2', '--replicas', '1', '--json'], env, 400_000);
      if (r.code !== 0) throw new Error(`up failed: ${describeResult(r)}`);
    }, 420_000);

    afterAll(async () => {
      await dvote([...base, 'down', '--volumes'], env);
    }, 120_000);

    it('a short bench with one shard primary killed mid-load loses nothing: every acknowledged vote on every copy once', async () => {
      const r = await dvote([...base, 'bench', '--votes', '4000', '--concurrency', '32', '--chaos', 'kill-shard-primary', '--json'], env, 300_000);
      const doc = r.json as Record<string, unknown> & { verify: { ok: boolean; lost: number; duplicated: number; divergent: number }; faults: { kind: string; target: string; recoveryMs: number | null; error?: string }[]; votes: { acknowledged: number } };
      expect(doc, describeResult(r)).toBeTruthy();
      expect(contractProblems(BenchV1, doc)).toEqual([]);
      expect(doc.faults).toHaveLength(1);
      expect(doc.faults[0]!.kind).toBe('kill-shard-primary');
      expect(doc.faults[0]!.error).toBeUndefined();
      expect(doc.votes.acknowledged).toBeGreaterThan(3000);
      expect(doc.verify).toMatchObject({ ok: true, lost: 0, duplicated: 0, divergent: 0 });
      expect(r.code).toBe(0);
    }, 320_000);

    it('bench --json passes through jq, and report/status --json match their documented contracts', async () => {
      const piped = await execa('bash', ['-c', `node ${DVOTE_BIN} --cluster ${cluster} bench --votes 1000 --concurrency 16 --json | jq -e '.verify.ok and .throughput.votesPerSec > 0'`], {
        env: { ...process.env, ...env, NO_COLOR: '1' },
        reject: false,
      });
      expect(piped.exitCode, piped.stderr).toBe(0);
      // The run is over and verified: the report's vote count of each copy is
      // the copy's count now (not a sample taken during the run).
      const tally = await dvote([...base, 'tally', '--json', '--verify'], env);
      const rep = await dvote([...base, 'report', '--json'], env);
      expect(contractProblems(ReportV1, rep.json)).toEqual([]);
      expect(rep.code).toBe((rep.json as { healthy: boolean }).healthy ? 0 : 1);
      const copies = (tally.json as { shards: { copies: { node: string; total: number }[] }[] }).shards.flatMap((x) => x.copies);
      expect(copies.length).toBeGreaterThan(0);
      const reported = new Map((rep.json as { nodes: { name: string; metrics: { votesStored: number | null } }[] }).nodes.map((n) => [n.name, n.metrics.votesStored]));
      for (const c of copies) expect(reported.get(c.node), c.node).toBe(c.total);
      const st = await dvote([...base, 'status', '--json'], env);
      expect(contractProblems(StatusV1, st.json)).toEqual([]);
    }, 200_000);

    it('--warmup: its votes are verified with the rest but left out of throughput and the timeline', async () => {
      const r = await dvote([...base, 'bench', '--warmup', '2s', '--votes', '1500', '--concurrency', '16', '--json'], env, 200_000);
      const doc = r.json as unknown as BenchDoc;
      expect(doc, describeResult(r)).toBeTruthy();
      expect(contractProblems(BenchV1, doc)).toEqual([]);
      expect(doc.config.warmupMs).toBe(2000);
      expect(doc.warmup).not.toBeNull();
      expect(doc.warmup!.votes).toBeGreaterThan(0);
      expect(doc.warmup!.elapsedMs).toBeGreaterThanOrEqual(2000);
      // The measured run sent exactly 1500 one-vote requests; the warm-up's come on top.
      const measuredRequests = doc.timeline.reduce((n, p) => n + p.ok + p.failed, 0);
      expect(measuredRequests).toBe(1500);
      expect(doc.votes.sent).toBe(1500 + doc.warmup!.votes + doc.warmup!.failedRequests);
      const measuredVotes = (doc.throughput.votesPerSec * doc.throughput.elapsedMs) / 1000;
      expect(Math.abs(measuredVotes - 1500)).toBeLessThan(10);
      // Every vote, the warm-up's too, is on every copy.
      expect(doc.votes.acknowledged + doc.votes.rejected).toBe(doc.votes.sent);
      // The warm-up does not use up the measured run's voters: repeat voters
      // stay near the 1 % asked for (the warm-up's ~hundreds would show here).
      expect(doc.votes.rejected).toBeLessThan(doc.votes.sent * 0.03);
      expect(doc.verify).toMatchObject({ ok: true, lost: 0, duplicated: 0, divergent: 0 });
      expect(r.code).toBe(0);
    }, 200_000);
  });
}
