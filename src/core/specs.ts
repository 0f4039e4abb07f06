// Build what the runtime runs for each desired node: its NodeSpec and the
// node program's configuration. Pure: addressing comes from the runtime as
// plain functions.
import type { Addressing, NodeSpec } from '../runtime/runtime.js';
import type { NodeConfig } from '../services/common/node-config.js';
import type { DesiredNode } from './layout.js';
import { effectiveReplicationFactor, type Topology } from './topology.js';

export interface SpecContext {
  topology: Topology;
  addressing: Addressing;
  /** Every manager of the topology (the seed list each node gets). */
  managers: DesiredNode[];
  /** True when the manager group is being created now. */
  bootstrap: boolean;
  /** Extra env for every node (e.g. DVOTE_PG_BIN for the process runtime). */
  env?: Record<string, string>;
  logLevel?: NodeConfig['logLevel'];
}

/** Seed list of managers, as the cluster's nodes reach them. */
export function managerPeers(ctx: SpecContext): NodeConfig['managers'] {
  return ctx.managers.map((m) => ({
    id: m.name,
    http: ctx.addressing.internal(m.name, 'http', m.ports.http),
    raft: ctx.addressing.internal(m.name, 'raft', m.ports.raft!),
  }));
}

export function buildSpec(node: DesiredNode, ctx: SpecContext): NodeSpec {
  const { topology: t, addressing: a } = ctx;
  const http = a.listen(node.name, 'http', node.ports.http);
  const config: NodeConfig = {
    cluster: t.cluster,
    id: node.name,
    role: node.role,
    dataDir: a.dataDir(node.name),
    listen: {
      host: http.host,
      httpPort: http.port,
      ...(node.ports.raft !== undefined ? { raftPort: a.listen(node.name, 'raft', node.ports.raft).port } : {}),
    },
    advertise: {
      http: a.internal(node.name, 'http', node.ports.http),
      ...(node.ports.raft !== undefined ? { raft: a.internal(node.name, 'raft', node.ports.raft) } : {}),
    },
    managers: managerPeers(ctx),
    ...(node.role === 'manager' ? { bootstrap: ctx.bootstrap } : {}),
    ...(t.timing ? { timing: t.timing } : {}),
    ...(t.failureDetector?.heartbeatMs ? { heartbeatMs: t.failureDetector.heartbeatMs } : {}),
    ...(t.failureDetector?.timeoutMs ? { failureTimeoutMs: t.failureDetector.timeoutMs } : {}),
    ...(ctx.logLevel ? { logLevel: ctx.logLevel } : {}),
    settings: roleSettings(node, ctx),
  };
  return {
    cluster: t.cluster,
    name: node.name,
    role: node.role,
    labels: node.shard !== undefined ? { 'io.dvote.shard': String(node.shard) } : {},
    config,
    ports: node.ports,
    ...(ctx.env ? { env: ctx.env } : {}),
    restartOnCrash: true,
  };
}

function roleSettings(node: DesiredNode, ctx: SpecContext): Record<string, unknown> {
  const t = ctx.topology;
  switch (node.role) {
    case 'manager':
      return {};
    case 'broker':
      return { replicationFactor: effectiveReplicationFactor(t) };
    case 'postgres':
      return {
        shard: node.shard,
        instance: node.index,
        pgListen: ctx.addressing.listen(node.name, 'pg', node.ports.pg!),
        pgAdvertise: ctx.addressing.internal(node.name, 'pg', node.ports.pg!),
      };
    case 'shard':
      return {
        shard: node.shard,
        replication: t.replication,
        ...(t.groupCommit?.maxBatch ? { maxBatch: t.groupCommit.maxBatch } : {}),
        ...(t.groupCommit?.maxInFlight ? { maxInFlight: t.groupCommit.maxInFlight } : {}),
      };
  }
}
