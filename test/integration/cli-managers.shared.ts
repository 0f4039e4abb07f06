// The acceptance flow of the manager cluster through the real CLI, shared by
// the docker and process runtime test files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/**
 * The issue-3 acceptance flow through the real CLI on one runtime: up ->
 * status (one leader, 3 healthy) -> kill the leader -> a new leader within
 * 2 s and the KV intact -> up again converges -> scale 5 then 3 -> down
 * leaves nothing (`leftovers` lists what remains) -> 5 managers survive two
 * kills.
 */
export function managerAcceptanceFlow(
  rt: 'docker' | 'process',
  cluster: string,
  env: Record<string, string>,
  leftovers: (cluster: string) => Promise<string[]>,
): void {
  const base = ['--cluster', cluster];
  const up3 = [...base, 'up', '--runtime', rt, '--managers', '3', '--brokers', '0', '--shards', '0'];

  afterAll(async () => {
    await dvote([...base, 'down', '--volumes'], env);
    await dvote(['--cluster', `${cluster}-five`, 'down', '--volumes'], env);
  });

    describe(`dvote managers on ${rt}`, () => {
    let leader = '';

    beforeAll(async () => {
      const r = ok(await dvote([...up3, '--json'], env));
      expect(r.json?.schema).toBe('dvote.up/v1');
      expect(r.json?.runtime).toBe(rt);
      expect(r.json?.stale).toEqual([]);
      const phases = (r.json?.phases as { name: string; ms: number }[]).map((p) => p.name);
      expect(phases).toEqual(expect.arrayContaining(['runtime', 'prepare', 'start managers']));
    }, 180_000);

    it('status shows exactly one leader and three healthy members with term and commit index', async () => {
      const s = await status(base, env);
      expect(s.code).toBe(0);
      expect(s.doc.healthy).toBe(true);
      leader = expectOneLeaderAllHealthy(s.doc.nodes, 3);
    });

    it('killing the leader elects a new one within 2 s; the KV written before is still there', async () => {
      const s = await status(base, env);
      const client = managerClient(s.doc.nodes);
      await client.put('acceptance/before-kill', 'kept');
      const k = ok(await dvote([...base, 'kill', '--role', 'manager', '--leader', '--json'], env));
      expect(k.json).toMatchObject({ schema: 'dvote.kill/v1', action: 'kill', targets: [{ name: leader, role: 'manager' }] });
      const { leader: next, ms } = await waitForNewLeader(base, env, leader, 10_000);
      console.log(`${rt} runtime: new leader ${next} seen ${ms.toFixed(0)} ms after the kill command returned`);
      expect(ms).toBeLessThan(2000);
      expect((await client.get('acceptance/before-kill'))?.value).toBe('kept');
      // the killed node stays down (an injected kill is remembered)
      const after = await status(base, env);
      expect(after.doc.nodes.find((n) => n.name === leader)?.state).toBe('killed');
      expect(after.code).toBe(1); // unhealthy while a member is down
      await client.close();
    });

    it('up run again converges without duplicates and restarts the killed member', async () => {
      const r = ok(await dvote([...up3, '--json'], env));
      expect(r.json?.created).toEqual([]);
      // The same build of dvote made every node: none is named as stale.
      expect(r.json?.stale).toEqual([]);
      const s = await status(base, env);
      expectOneLeaderAllHealthy(s.doc.nodes, 3);
      expect(s.doc.nodes).toHaveLength(3);
    }, 120_000);

    it('scale --managers 5 then 3 changes membership through Raft without losing a KV entry', async () => {
      const s0 = await status(base, env);
      const c0 = managerClient(s0.doc.nodes);
      for (let i = 0; i < 50; i++) await c0.put(`scale/${i}`, `v${i}`);
      await c0.close();
      ok(await dvote([...base, 'scale', '--managers', '5'], env));
      const s5 = await status(base, env);
      expectOneLeaderAllHealthy(s5.doc.nodes, 5);
      ok(await dvote([...base, 'scale', '--managers', '3'], env));
      const s3 = await status(base, env);
      expectOneLeaderAllHealthy(s3.doc.nodes, 3);
      const c3 = managerClient(s3.doc.nodes);
      for (let i = 0; i < 50; i++) expect((await c3.get(`scale/${i}`))?.value).toBe(`v${i}`);
      expect((await c3.get('acceptance/before-kill'))?.value).toBe('kept');
      await c3.close();
    }, 240_000);

    it('down leaves nothing of the cluster behind', async () => {
      const r = ok(await dvote([...base, 'down', '--volumes', '--json'], env));
      expect((r.json?.removed as { nodes: string[] }).nodes.length).toBe(3);
      expect(await leftovers(cluster)).toEqual([]);
      const s = await dvote([...base, 'status', '--json'], env);
      expect(s.code).toBe(2); // no such cluster
    });
  });

    describe(`five managers on ${rt}`, () => {
    it('survive two leader kills', async () => {
      const b5 = ['--cluster', `${cluster}-five`];
      ok(await dvote([...b5, 'up', '--runtime', rt, '--managers', '5', '--brokers', '0', '--shards', '0'], env));
      const s = await status(b5, env);
      const client = managerClient(s.doc.nodes);
      await client.put('five/k', 'v');
      let leader = expectOneLeaderAllHealthy(s.doc.nodes, 5);
      for (let i = 0; i < 2; i++) {
        ok(await dvote([...b5, 'kill', '--role', 'manager', '--leader'], env));
        leader = (await waitForNewLeader(b5, env, leader, 10_000)).leader;
      }
      expect((await client.get('five/k'))?.value).toBe('v');
      await client.put('five/after', 'two kills');
      expect((await client.get('five/after'))?.value).toBe('two kills');
      await client.close();
      ok(await dvote([...b5, 'down', '--volumes'], env));
    }, 180_000);
  });
}
