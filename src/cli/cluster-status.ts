// Gather a cluster's status: what the runtime says about each node, plus what
// each node says about itself on /health. The document is dvote.status/v1.
import { request } from 'undici';
import type { ObservedNode, Runtime } from '../runtime/runtime.js';

export interface StatusNode {
  name: string;
  role: string;
  /** Raft role for Raft members (leader/follower/...), else "running"; or the runtime state when not running. */
  state: string;
  runtimeState: ObservedNode['state'];
  disconnected: boolean;
  healthy: boolean;
  leader: string | null;
  term: number | null;
  commitIndex: number | null;
  appliedIndex: number | null;
  endpoint: string;
  shard?: number;
  lag?: number;
  /** Why the node is unhealthy, when it is. */
  problem?: string;
  health?: Record<string, unknown>;
}

export interface StatusDoc {
  schema: 'dvote.status/v1';
  cluster: string;
  runtime: string;
  healthy: boolean;
  /** The manager leader all live managers agree on, or null. */
  managerLeader: string | null;
  problems: string[];
  nodes: StatusNode[];
  checkedAt: string;
}

export async function fetchHealth(endpoint: string, timeoutMs = 1000): Promise<{ status: number; body: Record<string, unknown> } | { error: string }> {
  try {
    const res = await request(`${endpoint}/health`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}

export async function collectStatus(runtime: Runtime, cluster: string): Promise<StatusDoc> {
  const observed = await runtime.listNodes(cluster);
  const nodes = await Promise.all(
    observed.map(async (o): Promise<StatusNode> => {
      const base: StatusNode = {
        name: o.name,
        role: o.role,
        state: o.state,
        runtimeState: o.state,
        disconnected: o.disconnected,
        healthy: false,
        leader: null,
        term: null,
        commitIndex: null,
        appliedIndex: null,
        endpoint: o.endpoint,
        ...(o.labels['io.dvote.shard'] ? { shard: Number(o.labels['io.dvote.shard']) } : {}),
      };
      if (o.state !== 'running') return { ...base, problem: `node is ${o.state}` };
      const h = await fetchHealth(o.endpoint);
      if ('error' in h) return { ...base, state: o.disconnected ? 'disconnected' : 'unreachable', problem: `no answer on ${o.endpoint}/health: ${h.error}` };
      const b = h.body;
      return {
        ...base,
        state: typeof b.state === 'string' ? b.state : 'running',
        healthy: h.status === 200 && b.healthy !== false && !o.disconnected,
        leader: typeof b.leader === 'string' ? b.leader : null,
        term: num(b.term),
        commitIndex: num(b.commitIndex),
        appliedIndex: num(b.appliedIndex),
        ...(num(b.lag) !== null ? { lag: num(b.lag)! } : {}),
        ...(h.status !== 200 || b.healthy === false ? { problem: String(b.reason ?? b.error ?? `health answered ${h.status}`) } : {}),
        ...(o.disconnected ? { problem: 'disconnected from the cluster network' } : {}),
        health: b,
      };
    }),
  );
  nodes.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  const problems: string[] = [];
  const managers = nodes.filter((n) => n.role === 'manager');
  const leaders = managers.filter((n) => n.state === 'leader' && n.healthy);
  let managerLeader: string | null = null;
  if (managers.length > 0) {
    // The leader of the highest term among live managers; followers must agree.
    const top = leaders.sort((a, b) => (b.term ?? 0) - (a.term ?? 0))[0];
    if (!top) problems.push('the managers have no leader');
    else {
      managerLeader = top.name;
      const sameTermLeaders = leaders.filter((l) => l.term === top.term);
      if (sameTermLeaders.length > 1) problems.push(`two managers claim leadership in term ${top.term}`);
    }
  }
  for (const n of nodes) if (!n.healthy) problems.push(`${n.name}: ${n.problem ?? 'unhealthy'}`);
  return {
    schema: 'dvote.status/v1',
    cluster,
    runtime: runtime.kind,
    healthy: nodes.length > 0 && problems.length === 0,
    managerLeader,
    problems,
    nodes,
    checkedAt: new Date().toISOString(),
  };
}
