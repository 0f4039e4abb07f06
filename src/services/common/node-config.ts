// The configuration every node program receives from its runtime, as JSON in
// the DVOTE_CONFIG environment variable. The runtimes (docker, process) build
// it; the node validates it at start and exits with a clear message if it is
// wrong, before touching any data.
import { z } from 'zod';

const hostPort = z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected "host:port"');

export const ManagerPeerSchema = z.strictObject({
  id: z.string().min(1),
  /** HTTP base address others use, "host:port". */
  http: hostPort,
  /** Raft transport address others use, "host:port". */
  raft: hostPort,
});
export type ManagerPeer = z.infer<typeof ManagerPeerSchema>;

export const TimingSchema = z.strictObject({
  tickMs: z.number().int().min(1).max(1000),
  electionTick: z.number().int().min(2).max(1000),
  heartbeatTick: z.number().int().min(1).max(1000),
});

export const NodeConfigSchema = z.strictObject({
  cluster: z.string().min(1),
  /** Node id, e.g. "manager-1"; also its Raft id. */
  id: z.string().min(1),
  role: z.enum(['manager', 'broker', 'shard', 'postgres']),
  dataDir: z.string().min(1),
  /** Where to listen. */
  listen: z.strictObject({
    host: z.string().min(1),
    httpPort: z.number().int().min(0).max(65535),
    raftPort: z.number().int().min(0).max(65535).optional(),
  }),
  /** How others reach this node. */
  advertise: z.strictObject({ http: hostPort, raft: hostPort.optional() }),
  /** Every manager known at start (the initial group, or the group this node joins). */
  managers: z.array(ManagerPeerSchema),
  /** Manager only: start a new group with `managers` as voters when the data dir is empty. */
  bootstrap: z.boolean().optional(),
  timing: TimingSchema.partial().optional(),
  /** Heartbeat period to the managers and the failure-detector timeout, ms. */
  heartbeatMs: z.number().int().min(10).max(60_000).optional(),
  failureTimeoutMs: z.number().int().min(50).max(600_000).optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  /** Role-specific settings, validated by the role. */
  settings: z.record(z.string(), z.unknown()).optional(),
});
export type NodeConfig = z.infer<typeof NodeConfigSchema>;

export function parseNodeConfig(raw: string | undefined): NodeConfig {
  if (!raw) throw new Error('DVOTE_CONFIG is not set: the runtime must pass the node configuration as JSON');
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new Error(`DVOTE_CONFIG is not valid JSON: ${(e as Error).message}`);
  }
  const r = NodeConfigSchema.safeParse(json);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`DVOTE_CONFIG is invalid: ${problems.join('; ')}`);
  }
  return r.data;
}
