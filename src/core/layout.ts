// The nodes a topology asks for, with stable names and host ports. Pure.
//
// Port plan, relative to ports.base (each cluster owns [base, base + 600)):
//   http = base + slot, raft = base + 200 + slot, pg = base + 400 + slot
//   slot: manager i -> i-1 (0..6), broker i -> 10+i-1 (10..39),
//         shard s service -> 40+(s-1)*8, shard s PostgreSQL i -> 40+(s-1)*8+i
// A node keeps its ports for its whole life (they depend only on its name).
import { nodeNames, parseNodeName, type NodeRole } from './naming.js';
import type { Topology } from './topology.js';

export interface DesiredNode {
  name: string;
  role: NodeRole;
  /** Shard number for shard services and PostgreSQL nodes. */
  shard?: number;
  /** 1-based index within its role (or within its shard for PostgreSQL). */
  index: number;
  ports: { http: number; raft?: number; pg?: number };
}

export function slotOf(name: string): number {
  const p = parseNodeName(name);
  if (!p) throw new Error(`not a dvote node name: ${name}`);
  switch (p.role) {
    case 'manager':
      return p.index - 1;
    case 'broker':
      return 10 + p.index - 1;
    case 'shard':
      return 40 + (p.shard - 1) * 8;
    case 'postgres':
      return 40 + (p.shard - 1) * 8 + p.index;
  }
}

export function portsOf(base: number, name: string): DesiredNode['ports'] {
  const slot = slotOf(name);
  const p = parseNodeName(name)!;
  const ports: DesiredNode['ports'] = { http: base + slot };
  if (p.role === 'manager' || p.role === 'broker') ports.raft = base + 200 + slot;
  if (p.role === 'postgres') ports.pg = base + 400 + slot;
  return ports;
}

export function desiredNodes(t: Topology): DesiredNode[] {
  const base = t.ports.base;
  const out: DesiredNode[] = [];
  const add = (name: string, role: NodeRole, index: number, shard?: number) =>
    out.push({ name, role, index, ...(shard !== undefined ? { shard } : {}), ports: portsOf(base, name) });
  for (let i = 1; i <= t.managers; i++) add(nodeNames.manager(i), 'manager', i);
  for (let i = 1; i <= t.brokers; i++) add(nodeNames.broker(i), 'broker', i);
  for (let s = 1; s <= t.shards; s++) {
    for (let i = 1; i <= t.replicas + 1; i++) add(nodeNames.postgres(s, i), 'postgres', i, s);
    add(nodeNames.shardService(s), 'shard', 1, s);
  }
  return out;
}

/** Every host port the topology will use (http, raft for the process runtime, pg). */
export function allPorts(nodes: DesiredNode[], opts: { includeRaft: boolean }): number[] {
  const ports: number[] = [];
  for (const n of nodes) {
    ports.push(n.ports.http);
    if (n.ports.pg !== undefined) ports.push(n.ports.pg);
    if (opts.includeRaft && n.ports.raft !== undefined) ports.push(n.ports.raft);
  }
  return ports;
}
