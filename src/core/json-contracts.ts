// The JSON documents CI scripts rely on, as zod schemas: the fields listed in
// README.md ("JSON documents"). Tests validate the real commands' output
// against these; fields may be added, never renamed (bump the version then).
import { z } from 'zod';

const latency = z.object({ p50: z.number(), p90: z.number(), p99: z.number(), p999: z.number(), max: z.number() });

export const StatusV1 = z.object({
  schema: z.literal('dvote.status/v1'),
  cluster: z.string(),
  runtime: z.enum(['docker', 'process']),
  healthy: z.boolean(),
  nodes: z.array(
    z.object({
      name: z.string(),
      role: z.string(),
      state: z.string(),
      healthy: z.boolean(),
      leader: z.string().nullable(),
      term: z.number().nullable(),
      commitIndex: z.number().nullable(),
      endpoint: z.string().url(),
      shard: z.number().optional(),
      lag: z.number().optional(),
    }),
  ),
});

export const BenchV1 = z.object({
  schema: z.literal('dvote.bench/v1'),
  config: z.object({}).passthrough(),
  votes: z.object({ acknowledged: z.number().int(), rejected: z.number().int(), failed: z.number().int() }),
  throughput: z.object({ votesPerSec: z.number() }),
  latencyMs: latency,
  generator: z.object({
    cpuCores: z.number(),
    eventLoopDelayMs: z.object({ p50: z.number(), p99: z.number(), max: z.number() }),
    sendLagMs: latency.nullable(),
  }),
  faults: z.array(z.object({ kind: z.string(), target: z.string(), at: z.number() }).passthrough()),
  verify: z.object({ ok: z.boolean(), lost: z.number().int(), duplicated: z.number().int(), divergent: z.number().int() }),
});

export const ReportV1 = z.object({
  schema: z.literal('dvote.report/v1'),
  cluster: z.string(),
  healthy: z.boolean(),
  nodes: z.array(
    z.object({
      name: z.string(),
      role: z.string(),
      healthy: z.boolean(),
      metrics: z.object({
        raftTerm: z.number().nullable(),
        commitIndex: z.number().nullable(),
        appliedIndex: z.number().nullable(),
        replicationLag: z.number().nullable(),
        votesStored: z.number().nullable(),
        requestRate: z.number().nullable(),
        errorRate: z.number().nullable(),
      }).passthrough(),
    }),
  ),
});

/** Problems of a document against a contract, as "path: message" lines (empty when valid). */
export function contractProblems(schema: z.ZodType, doc: unknown): string[] {
  const r = schema.safeParse(doc);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.') || '(document)'}: ${i.message}`);
}
