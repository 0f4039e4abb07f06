// The planner: desired nodes (from the topology) versus observed nodes (from
// the runtime) -> the ordered steps that converge one onto the other. Pure;
// the CLI executes the plan. Running it twice on a converged cluster yields
// no steps, which is what makes `up` idempotent.
import type { NodeRole } from './naming.js';
import type { DesiredNode } from './layout.js';

export interface ObservedState {
  name: string;
  role: NodeRole;
  state: 'running' | 'paused' | 'killed' | 'exited' | 'starting';
  disconnected: boolean;
}

export type StepReason = 'missing' | 'killed' | 'exited' | 'paused' | 'disconnected';

export type Step =
  /** Create and/or start the node (converge its run state). */
  | { kind: 'start'; node: DesiredNode; reason: StepReason }
  /** A new manager joins the existing group: learner, catch up, voter. */
  | { kind: 'joinManager'; node: DesiredNode }
  /** Take a manager out of the group (through Raft) before its node is removed. */
  | { kind: 'leaveManager'; name: string }
  | { kind: 'remove'; name: string; role: NodeRole };

export interface Phase {
  name: string;
  steps: Step[];
  /** After this phase, wait for the named condition before going on. */
  waitFor?: 'managers' | 'brokers' | 'postgres' | 'shards';
}

export interface Plan {
  /** True when no manager exists yet: the manager group is created (bootstrapped). */
  bootstrap: boolean;
  phases: Phase[];
  /** Nodes that already run as desired. */
  unchanged: string[];
}

const ROLE_ORDER: NodeRole[] = ['manager', 'broker', 'postgres', 'shard'];
const PLURAL: Record<NodeRole, string> = {
  manager: 'managers',
  broker: 'brokers',
  postgres: 'PostgreSQL nodes',
  shard: 'shard services',
};
const WAIT_OF: Record<NodeRole, Phase['waitFor']> = {
  manager: 'managers',
  broker: 'brokers',
  postgres: 'postgres',
  shard: 'shards',
};

export function planConverge(desired: DesiredNode[], observed: ObservedState[]): Plan {
  const obs = new Map(observed.map((o) => [o.name, o]));
  const want = new Set(desired.map((d) => d.name));
  const managersExist = observed.some((o) => o.role === 'manager');
  const unchanged: string[] = [];
  const phases: Phase[] = [];

  for (const role of ROLE_ORDER) {
    const steps: Step[] = [];
    for (const d of desired.filter((x) => x.role === role)) {
      const o = obs.get(d.name);
      if (!o) {
        steps.push({ kind: 'start', node: d, reason: 'missing' });
        if (role === 'manager' && managersExist) steps.push({ kind: 'joinManager', node: d });
        continue;
      }
      const reason = reasonToStart(o);
      if (reason) steps.push({ kind: 'start', node: d, reason });
      else unchanged.push(d.name);
    }
    if (steps.length > 0) phases.push({ name: `start ${PLURAL[role]}`, steps, waitFor: WAIT_OF[role] });
  }

  // Surplus nodes go in reverse dependency order; managers leave the group
  // one at a time (single-server changes) before their nodes are removed.
  const surplus = observed.filter((o) => !want.has(o.name));
  for (const role of [...ROLE_ORDER].reverse()) {
    const gone = surplus
      .filter((o) => o.role === role)
      .sort((a, b) => b.name.localeCompare(a.name, 'en', { numeric: true }));
    if (gone.length === 0) continue;
    const steps: Step[] = [];
    for (const o of gone) {
      if (role === 'manager') steps.push({ kind: 'leaveManager', name: o.name });
      steps.push({ kind: 'remove', name: o.name, role });
    }
    phases.push({ name: `remove ${PLURAL[role]}`, steps, ...(role === 'manager' ? { waitFor: 'managers' as const } : {}) });
  }

  return { bootstrap: !managersExist, phases, unchanged };
}

function reasonToStart(o: ObservedState): StepReason | null {
  switch (o.state) {
    case 'killed':
      return 'killed';
    case 'exited':
      return 'exited';
    case 'paused':
      return 'paused';
    default:
      return o.disconnected ? 'disconnected' : null;
  }
}

export function planIsEmpty(p: Plan): boolean {
  return p.phases.every((ph) => ph.steps.length === 0);
}
