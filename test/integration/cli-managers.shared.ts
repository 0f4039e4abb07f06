// The acceptance flow of the manager cluster through the real CLI, shared by
// the docker and process runtime test files.
import { expect } from 'vitest';
import { ManagerClient } from '../../src/client/manager-client.js';
import { describeResult, dvote, type CliResult } from '../utils/cli.js';

export interface StatusNodeJson {
  name: string;
  role: string;
  state: string;
  healthy: boolean;
  leader: string | null;
  term: number | null;
  commitIndex: number | null;
  endpoint: string;
}

export function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`dvote failed: ${describeResult(r)}`);
  return r;
}

export async function status(base: string[], env: Record<string, string>): Promise<{ code: number; doc: { healthy: boolean; managerLeader: string | null; nodes: StatusNodeJson[] } }> {
  const r = await dvote([...base, 'status', '--json'], env);
  if (!r.json) throw new Error(`status printed no JSON: ${describeResult(r)}`);
  return { code: r.code, doc: r.json as never };
}

export async function waitForNewLeader(base: string[], env: Record<string, string>, old: string, timeoutMs: number): Promise<{ leader: string; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const s = await status(base, env);
    const leaders = s.doc.nodes.filter((n) => n.role === 'manager' && n.state === 'leader' && n.healthy);
    if (leaders.length === 1 && leaders[0]!.name !== old) return { leader: leaders[0]!.name, ms: performance.now() - t0 };
    if (performance.now() - t0 > timeoutMs) throw new Error(`no new leader within ${timeoutMs} ms: ${JSON.stringify(s.doc.nodes)}`);
  }
}

export function managerClient(nodes: StatusNodeJson[]): ManagerClient {
  return new ManagerClient({ endpoints: nodes.filter((n) => n.role === 'manager').map((n) => n.endpoint), timeoutMs: 15_000 });
}

export function expectOneLeaderAllHealthy(nodes: StatusNodeJson[], managers: number): string {
  const ms = nodes.filter((n) => n.role === 'manager');
  expect(ms).toHaveLength(managers);
  expect(ms.every((n) => n.healthy)).toBe(true);
  const leaders = ms.filter((n) => n.state === 'leader');
  expect(leaders).toHaveLength(1);
  for (const n of ms) {
    expect(n.leader).toBe(leaders[0]!.name);
    expect(n.term).toBeGreaterThan(0);
    expect(n.commitIndex).toBeGreaterThan(0);
  }
  return leaders[0]!.name;
}
