// The topology a user asks for: from a YAML file and/or flags, validated as a
// whole so that every problem is reported at once as "path: message", with
// warnings kept apart from errors. Pure: parsing text is the caller's job.
import { z } from 'zod';
import { CLUSTER_NAME } from './naming.js';

export const REPLICATION_MODES = ['async', 'log', 'sync'] as const;
export type ReplicationMode = (typeof REPLICATION_MODES)[number];

export const SHARD_MAPS = ['hash', 'parity', 'last-digit'] as const;
export type ShardMapKind = (typeof SHARD_MAPS)[number];

export const RUNTIMES = ['auto', 'docker', 'process'] as const;

/** The default ballot of the original DisVote form. */
export const DEFAULT_BALLOT = ['Democrats', 'Republicans', 'Protest vote'];

export const LIMITS = {
  managers: { min: 1, max: 7 },
  brokers: { min: 0, max: 30 },
  shards: { min: 0, max: 16 },
  replicas: { min: 0, max: 6 },
  ballot: { min: 2, max: 32 },
} as const;

const count = (what: keyof typeof LIMITS) =>
  z
    .number({ error: `${what} must be a whole number` })
    .int({ error: `${what} must be a whole number` })
    .min(LIMITS[what].min, { error: `${what} must be at least ${LIMITS[what].min}` })
    .max(LIMITS[what].max, { error: `${what} must be at most ${LIMITS[what].max} on one machine` });

export const TopologySchema = z.strictObject({
  cluster: z.string().regex(CLUSTER_NAME, { error: 'must start with a letter and use only a-z, 0-9 and "-" (max 31)' }).default('dvote'),
  runtime: z.enum(RUNTIMES).default('auto'),
  managers: count('managers').default(3),
  brokers: count('brokers').default(3),
  shards: count('shards').default(2),
  /** PostgreSQL replicas per shard, besides the primary. */
  replicas: count('replicas').default(2),
  replication: z.enum(REPLICATION_MODES).default('log'),
  /** How voter IDs map to shards; parity = the original odd/even design (2 shards), last-digit = its ten-shard proposal. */
  shardMap: z.enum(SHARD_MAPS).default('hash'),
  /** Partitions per shard topic and replication factor of the vote log (RF <= brokers). */
  replicationFactor: z.number().int().min(1).max(5).optional(),
  ballot: z
    .array(z.string().trim().min(1, { error: 'a choice must not be empty' }).max(64))
    .min(LIMITS.ballot.min, { error: `a ballot needs at least ${LIMITS.ballot.min} choices` })
    .max(LIMITS.ballot.max)
    .default(DEFAULT_BALLOT),
  voterIds: z
    .strictObject({
      min: z.number().int().min(0),
      max: z.number().int().max(Number.MAX_SAFE_INTEGER),
    })
    .default({ min: 1, max: 9_999_999_999 }),
  ports: z
    .strictObject({
      /** First host port; the cluster uses [base, base + PORT_SPAN). */
      base: z.number().int().min(1024).max(65535),
    })
    .optional(),
  timing: z
    .strictObject({
      tickMs: z.number().int().min(1).max(1000),
      electionTick: z.number().int().min(2).max(1000),
      heartbeatTick: z.number().int().min(1).max(1000),
    })
    .partial()
    .optional(),
  failureDetector: z
    .strictObject({
      heartbeatMs: z.number().int().min(10).max(60_000),
      timeoutMs: z.number().int().min(50).max(600_000),
    })
    .partial()
    .optional(),
  /**
   * The shard services' group commit (services/shard/vote-batcher.ts): at most
   * maxInFlight batches of up to maxBatch votes in flight per shard. Fewer
   * batches in flight make larger batches (fewer rounds through the primary
   * and the vote log); more lower latency while the CPU has room.
   */
  groupCommit: z
    .strictObject({
      maxBatch: z.number().int().min(1).max(10_000),
      maxInFlight: z.number().int().min(1).max(64),
    })
    .partial()
    .optional(),
});

export type TopologyInput = z.input<typeof TopologySchema>;
export type Topology = z.output<typeof TopologySchema> & { ports: { base: number } };

/** Host ports a cluster may use, starting at ports.base. */
export const PORT_SPAN = 600;

export interface ValidationResult {
  topology: Topology | null;
  errors: string[];
  warnings: string[];
}

/** Default port base: 7100 for the cluster "dvote", one of 24 blocks below 32768 per other name. */
export function defaultPortBase(cluster: string): number {
  if (cluster === 'dvote') return 7100;
  let h = 0x811c9dc5;
  for (let i = 0; i < cluster.length; i++) {
    h ^= cluster.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Blocks stay below 32768, where Linux starts handing out ephemeral ports
  // for outgoing connections (ip_local_port_range): a listener there could
  // find its port taken by some client's socket.
  return 8100 + 1000 * (h % 24);
}

function pathOf(path: ReadonlyArray<PropertyKey>): string {
  return path.length === 0 ? '(topology)' : path.map(String).join('.');
}

/**
 * Validate a topology document (already parsed from YAML/JSON and merged with
 * flags). Returns every error and warning at once.
 */
export function validateTopology(input: unknown): ValidationResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { topology: null, errors: ['(topology): must be a mapping of keys to values'], warnings };
  }
  const r = TopologySchema.safeParse(input);
  if (!r.success) {
    for (const issue of r.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys) errors.push(`${pathOf([...issue.path, k])}: unknown key (check the spelling; see templates/topology/default.yaml)`);
      } else {
        errors.push(`${pathOf(issue.path)}: ${issue.message}`);
      }
    }
    return { topology: null, errors, warnings };
  }
  const t = r.data as Topology;
  t.ports = t.ports ?? { base: defaultPortBase(t.cluster) };

  // Contradictions between otherwise valid values.
  if (t.ports.base + PORT_SPAN > 65536) errors.push(`ports.base: ${t.ports.base} + ${PORT_SPAN} ports would pass 65535`);
  if (t.shards > 0 && t.brokers === 0 && t.replication !== 'sync') {
    errors.push(`brokers: replication "${t.replication}" ships every vote through the broker log, so it needs at least 1 broker (or use replication: sync)`);
  }
  if (t.replicationFactor !== undefined && t.replicationFactor > t.brokers) {
    errors.push(`replicationFactor: ${t.replicationFactor} is more than the ${t.brokers} brokers that could hold the copies`);
  }
  if (t.shardMap === 'parity' && t.shards !== 2) {
    errors.push(`shardMap: "parity" (odd/even voter IDs) needs exactly 2 shards, not ${t.shards}`);
  }
  if (t.shardMap === 'last-digit' && t.shards !== 10) {
    errors.push(`shardMap: "last-digit" needs exactly 10 shards, not ${t.shards}`);
  }
  if (t.voterIds.min > t.voterIds.max) errors.push(`voterIds: min ${t.voterIds.min} is above max ${t.voterIds.max}`);
  const seen = new Set<string>();
  t.ballot.forEach((c, i) => {
    const k = c.toLowerCase();
    if (seen.has(k)) errors.push(`ballot.${i}: "${c}" appears twice`);
    seen.add(k);
  });
  const timing = t.timing ?? {};
  if (timing.electionTick !== undefined && timing.heartbeatTick !== undefined && timing.electionTick <= timing.heartbeatTick) {
    errors.push(`timing.electionTick: must be greater than heartbeatTick (${timing.heartbeatTick})`);
  }
  const fd = t.failureDetector ?? {};
  if (fd.heartbeatMs !== undefined && fd.timeoutMs !== undefined && fd.timeoutMs < 2 * fd.heartbeatMs) {
    errors.push(`failureDetector.timeoutMs: must be at least twice heartbeatMs (${fd.heartbeatMs}) or every node looks dead`);
  }

  if (t.managers % 2 === 0) {
    warnings.push(`managers: ${t.managers} managers tolerate no more failures than ${t.managers - 1}; an odd number is better`);
  }
  if (t.shards > 0 && t.replicas === 0 && t.replication === 'sync') {
    warnings.push('replication: "sync" with 0 replicas waits for nobody; it behaves like a primary alone');
  }
  if (t.brokers > 0 && t.brokers < 3 && t.shards > 0) {
    warnings.push(`brokers: with ${t.brokers} broker(s) the vote log keeps ${t.brokers} cop${t.brokers === 1 ? 'y' : 'ies'}; 3 tolerate one broker loss`);
  }
  if (errors.length > 0) return { topology: null, errors, warnings };
  return { topology: t, errors, warnings };
}

/** The replication factor of the vote log: explicit, else min(3, brokers). */
export function effectiveReplicationFactor(t: Topology): number {
  return t.replicationFactor ?? Math.min(3, t.brokers);
}

/** Apply flag overrides (only the ones given) over a file's document. */
export function mergeTopology(file: Record<string, unknown>, flags: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) out[k] = v;
  return out;
}
