import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { desiredNodes } from '../../src/core/layout.js';
import { planConverge, type ObservedState } from '../../src/core/planner.js';
import { validateTopology, type Topology } from '../../src/core/topology.js';

function topo(over: Record<string, unknown>): Topology {
  const r = validateTopology(over);
  if (!r.topology) throw new Error(r.errors.join('; '));
  return r.topology;
}

function running(names: { name: string; role: ObservedState['role'] }[]): ObservedState[] {
  return names.map((n) => ({ ...n, state: 'running' as const, disconnected: false }));
}

describe('planner', () => {
  it('bootstraps a new cluster in dependency order: managers, brokers, postgres, shard services', () => {
    const p = planConverge(desiredNodes(topo({})), []);
    expect(p.bootstrap).toBe(true);
    expect(p.phases.map((ph) => ph.name)).toEqual(['start managers', 'start brokers', 'start PostgreSQL nodes', 'start shard services']);
    expect(p.phases[0]!.steps.every((s) => s.kind === 'start')).toBe(true);
  });

  it('a converged cluster needs no step (up is idempotent)', () => {
    const d = desiredNodes(topo({}));
    const p = planConverge(d, running(d));
    expect(p.phases).toEqual([]);
    expect(p.unchanged).toHaveLength(d.length);
  });

  it('scaling managers up joins the new ones through Raft; down removes them one at a time, highest first', () => {
    const three = desiredNodes(topo({ managers: 3, brokers: 0, shards: 0 }));
    const five = desiredNodes(topo({ managers: 5, brokers: 0, shards: 0 }));
    const up = planConverge(five, running(three));
    expect(up.bootstrap).toBe(false);
    expect(up.phases[0]!.steps.map((s) => `${s.kind}:${'node' in s ? s.node.name : s.name}`)).toEqual([
      'start:manager-4',
      'joinManager:manager-4',
      'start:manager-5',
      'joinManager:manager-5',
    ]);
    const down = planConverge(three, running(five));
    expect(down.phases[0]!.steps.map((s) => `${s.kind}:${'node' in s ? s.node.name : s.name}`)).toEqual([
      'leaveManager:manager-5',
      'remove:manager-5',
      'leaveManager:manager-4',
      'remove:manager-4',
    ]);
  });

  it('restarts killed and exited nodes, unpauses paused ones, reconnects disconnected ones', () => {
    const d = desiredNodes(topo({ managers: 3, brokers: 0, shards: 0 }));
    const obs: ObservedState[] = [
      { name: 'manager-1', role: 'manager', state: 'killed', disconnected: false },
      { name: 'manager-2', role: 'manager', state: 'paused', disconnected: false },
      { name: 'manager-3', role: 'manager', state: 'running', disconnected: true },
    ];
    const p = planConverge(d, obs);
    expect(p.phases[0]!.steps.map((s) => (s.kind === 'start' ? `${s.node.name}:${s.reason}` : s.kind))).toEqual([
      'manager-1:killed',
      'manager-2:paused',
      'manager-3:disconnected',
    ]);
  });

  it('property: after applying a plan, planning again yields nothing; names and ports are unique', () => {
    fc.assert(
      fc.property(
        fc.record({
          managers: fc.integer({ min: 1, max: 7 }),
          brokers: fc.integer({ min: 1, max: 6 }),
          shards: fc.integer({ min: 0, max: 4 }),
          replicas: fc.integer({ min: 0, max: 3 }),
        }),
        fc.record({
          managers: fc.integer({ min: 1, max: 7 }),
          brokers: fc.integer({ min: 1, max: 6 }),
          shards: fc.integer({ min: 0, max: 4 }),
          replicas: fc.integer({ min: 0, max: 3 }),
        }),
        (from, to) => {
          const before = desiredNodes(topo(from));
          const after = desiredNodes(topo(to));
          const plan = planConverge(after, running(before));
          // apply
          const state = new Map(before.map((n) => [n.name, n.role]));
          for (const ph of plan.phases)
            for (const s of ph.steps) {
              if (s.kind === 'start') state.set(s.node.name, s.node.role);
              if (s.kind === 'remove') state.delete(s.name);
            }
          const again = planConverge(after, running([...state].map(([name, role]) => ({ name, role }))));
          expect(again.phases).toEqual([]);
          const ports = after.flatMap((n) => [n.ports.http, n.ports.raft, n.ports.pg].filter((x) => x !== undefined));
          expect(new Set(ports).size).toBe(ports.length);
          expect(new Set(after.map((n) => n.name)).size).toBe(after.length);
        },
      ),
    );
  });
});
