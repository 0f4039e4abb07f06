// Ownership by labels: every resource dvote creates carries the same label
// set, merged here and nowhere else; finding, killing and cleaning up go
// through them. Cluster state is read back from these labels, so there is no
// state file to drift.
import type { NodeRole } from '../core/naming.js';

export const LABEL = {
  /** Marks anything created by dvote. */
  managed: 'io.dvote.managed',
  cluster: 'io.dvote.cluster',
  node: 'io.dvote.node',
  role: 'io.dvote.role',
  /** Shard number for shard services and PostgreSQL nodes. */
  shard: 'io.dvote.shard',
  /** Hash of the node's configuration; a change means the node must be recreated. */
  configHash: 'io.dvote.config-hash',
  /** Host ports, JSON {"http":7101,...}. */
  ports: 'io.dvote.ports',
  /** Image tag the node runs. */
  image: 'io.dvote.image',
} as const;

export function standardLabels(cluster: string, node: string, role: NodeRole, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...extra,
    [LABEL.managed]: 'true',
    [LABEL.cluster]: cluster,
    [LABEL.node]: node,
    [LABEL.role]: role,
  };
}

export function clusterFilter(cluster?: string): string[] {
  return cluster ? [`${LABEL.cluster}=${cluster}`] : [`${LABEL.managed}=true`];
}
