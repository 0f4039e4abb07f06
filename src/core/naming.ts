// Names of everything dvote creates. Node names are stable and meaningful
// ("manager-2", "broker-1", "shard-1-svc", "shard-1-pg-2"); which PostgreSQL
// of a shard is the primary changes with failover, so it is not in the name
// ("shard-1-primary" is an alias the CLI resolves through the managers).
// Runtime resources are "dvote-<cluster>-<node>".
export type NodeRole = 'manager' | 'broker' | 'shard' | 'postgres';

export const CLUSTER_NAME = /^[a-z][a-z0-9-]{0,30}$/;

export function validateClusterName(name: string): string | null {
  if (!CLUSTER_NAME.test(name)) {
    return `cluster name "${name}" must start with a letter and use only a-z, 0-9 and "-" (at most 31 characters)`;
  }
  return null;
}

export function resourceName(cluster: string, node: string): string {
  return `dvote-${cluster}-${node}`;
}

export function networkName(cluster: string): string {
  return `dvote-${cluster}`;
}

export function volumeName(cluster: string, node: string): string {
  return `dvote-${cluster}-${node}-data`;
}

export const nodeNames = {
  manager: (i: number) => `manager-${i}`,
  broker: (i: number) => `broker-${i}`,
  shardService: (s: number) => `shard-${s}-svc`,
  /** PostgreSQL instance i (1-based) of shard s; instance 1 starts as the primary. */
  postgres: (s: number, i: number) => `shard-${s}-pg-${i}`,
};

export type ParsedNodeName =
  | { role: 'manager' | 'broker'; index: number }
  | { role: 'shard'; shard: number; index: 0 }
  | { role: 'postgres'; shard: number; index: number };

/** Parse "manager-3" / "broker-1" / "shard-2-svc" / "shard-2-pg-1". */
export function parseNodeName(name: string): ParsedNodeName | null {
  let m = /^(manager|broker)-([1-9]\d*)$/.exec(name);
  if (m) return { role: m[1] as 'manager' | 'broker', index: Number(m[2]) };
  m = /^shard-([1-9]\d*)-svc$/.exec(name);
  if (m) return { role: 'shard', shard: Number(m[1]), index: 0 };
  m = /^shard-([1-9]\d*)-pg-([1-9]\d*)$/.exec(name);
  if (m) return { role: 'postgres', shard: Number(m[1]), index: Number(m[2]) };
  return null;
}
