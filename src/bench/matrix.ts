// `dvote bench --matrix`: the original DisVote Table 1 (10+10 ... 1000+1000
// votes against the master alone and with 1, 2, 3 replicas, sent one after
// the other by a Postman collection runner) beside our times, extended with
// throughput, p99 and the three replication modes. Each (mode, replicas)
// column runs on a fresh two-shard cluster (ids split by parity, as the
// original), first sequentially (one request at a time, as the original),
// then with C requests in flight, then through the batched vote API.
import type { Runtime } from '../runtime/runtime.js';
import type { Output } from '../cli/output/output.js';
import { runVoteBench } from './vote-bench.js';

/** DisVote Table 1, seconds: rows 10+10, 100+100, 500+500, 1000+1000; columns master, +1, +2, +3 replicas. */
export const ORIGINAL_TABLE1: Record<string, number[]> = {
  '10+10': [0.34, 1.1, 1.6, 2.97],
  '100+100': [3.38, 8.72, 15.82, 20.32],
  '500+500': [18.31, 43.2, 65.03, 98.63],
  '1000+1000': [33.69, 88.45, 140.89, 192.01],
};
export const TABLE1_SIZES: [string, number][] = [
  ['10+10', 20],
  ['100+100', 200],
  ['500+500', 1000],
  ['1000+1000', 2000],
];

export interface MatrixSpec {
  replicas: number[];
  modes: ('async' | 'log' | 'sync')[];
}

export interface MatrixRow {
  label: string;
  votes: number;
  replication: string;
  replicas: number;
  loop: string;
  /** The original's time for the same row and replica count (async, sequential). */
  originalSeconds: number | null;
  seconds: number;
  votesPerSec: number;
  p50: number;
  p99: number;
  verifyOk: boolean;
  lost: number;
}

export interface MatrixDoc {
  schema: 'dvote.bench.matrix/v1';
  runtime: string;
  concurrency: number;
  startedAt: string;
  spec: MatrixSpec;
  rows: MatrixRow[];
  ok: boolean;
  note: string;
}

export function parseMatrixSpec(text?: string): MatrixSpec {
  const spec: MatrixSpec = { replicas: [0, 1, 2, 3], modes: ['async', 'log', 'sync'] };
  if (!text) return spec;
  // "replicas=0..3,replication=async,log,sync": split on the key names
  const parts = text.split(/,(?=\s*(?:replicas|replication)=)/);
  for (const p of parts) {
    const [k, v] = p.split('=');
    if (k?.trim() === 'replicas' && v) {
      const m = /^(\d+)\.\.(\d+)$/.exec(v.trim());
      spec.replicas = m ? range(Number(m[1]), Number(m[2])) : v.split(/[,;]/).map((x) => Number(x.trim()));
      if (spec.replicas.some((r) => !Number.isInteger(r) || r < 0 || r > 6)) throw new Error(`matrix: replicas must be whole numbers 0-6 ("${v}")`);
    } else if (k?.trim() === 'replication' && v) {
      const modes = v.split(/[,;]/).map((x) => x.trim());
      for (const m of modes) if (m !== 'async' && m !== 'log' && m !== 'sync') throw new Error(`matrix: unknown replication mode "${m}"`);
      spec.modes = modes as MatrixSpec['modes'];
    } else {
      throw new Error(`matrix: cannot read "${p}"; use e.g. replicas=0..3,replication=async,log,sync`);
    }
  }
  return spec;
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}

export interface MatrixEnv {
  runtime: Runtime;
  out: Output;
  signal: AbortSignal;
  concurrency: number;
  /** Bring up (or converge) the matrix cluster with these settings; returns its name. */
  up: (o: { replication: string; replicas: number }) => Promise<string>;
  down: (cluster: string) => Promise<void>;
}

export async function runMatrixWith(env: MatrixEnv, spec: MatrixSpec): Promise<MatrixDoc> {
  const rows: MatrixRow[] = [];
  const startedAt = new Date().toISOString();
  for (const mode of spec.modes) {
    for (const replicas of spec.replicas) {
      if (env.signal.aborted) break;
      const cluster = await env.out.step(`matrix: ${mode} replication, primary + ${replicas} replica(s): cluster`, () => env.up({ replication: mode, replicas }));
      try {
        for (const [label, votes] of TABLE1_SIZES) {
          // As the original (one request at a time), many in flight, and
          // through the batched API (100 votes per request, 4 in flight).
          const loops = [
            { loop: 'sequential', concurrency: 1, batch: 1 },
            { loop: `${env.concurrency} in flight`, concurrency: env.concurrency, batch: 1 },
            { loop: 'batches of 100, 4 in flight', concurrency: 4, batch: 100 },
          ];
          for (const { loop, concurrency, batch } of loops) {
            const d = await env.out.step(`matrix: ${mode}, +${replicas}, ${label}, ${loop}`, (update) =>
              runVoteBench(
                { runtime: env.runtime, cluster, signal: env.signal, progress: update },
                { votes, concurrency, duplicates: 0, batch, chaos: false, verify: true, settleTimeoutMs: 30_000, seed: votes + replicas, direct: true },
              ),
            );
            const verifyOk = d.verify.ok;
            rows.push({
              label,
              votes,
              replication: mode,
              replicas,
              loop,
              originalSeconds: ORIGINAL_TABLE1[label]?.[replicas] ?? null,
              seconds: d.throughput.elapsedMs / 1000,
              votesPerSec: d.throughput.votesPerSec,
              p50: d.latencyMs.p50,
              p99: d.latencyMs.p99,
              verifyOk,
              lost: d.verify.lost,
            });
          }
        }
      } finally {
        await env.down(cluster);
      }
    }
  }
  return {
    schema: 'dvote.bench.matrix/v1',
    runtime: env.runtime.kind,
    concurrency: env.concurrency,
    startedAt,
    spec,
    rows,
    ok: rows.every((r) => r.verifyOk),
    note:
      'original = DisVote Table 1 (Flask + psycopg2, master and asynchronous replicas, requests sent one at a time, their machine); ' +
      'dvote rows use two shards split by voter-id parity, verified copy by copy after each row.',
  };
}
