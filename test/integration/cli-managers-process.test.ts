// Issue 3 acceptance on the process runtime, through the real CLI:
// up -> status (one leader, 3 healthy) -> kill leader -> new leader within 2 s,
// KV survives -> up again converges -> scale 5 then 3 -> down leaves nothing.
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { expectOneLeaderAllHealthy, managerClient, ok, status, waitForNewLeader } from './cli-managers.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-cli-proc-'));
const env = { DVOTE_STATE_DIR: stateDir };
const cluster = `tp${process.pid % 10000}`;
const base = ['--cluster', cluster];
const up3 = [...base, 'up', '--runtime', 'process', '--managers', '3', '--brokers', '0', '--shards', '0'];

afterAll(async () => {
  await dvote([...base, 'down', '--volumes'], env);
  await dvote(['--cluster', `${cluster}-five`, 'down', '--volumes'], env);
  rmSync(stateDir, { recursive: true, force: true });
});

describe('dvote managers on local processes', () => {
  let leader = '';

  beforeAll(async () => {
    const r = ok(await dvote([...up3, '--json'], env));
    expect(r.json?.schema).toBe('dvote.up/v1');
    expect(r.json?.runtime).toBe('process');
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
    console.log(`process runtime: new leader ${next} seen ${ms.toFixed(0)} ms after the kill command returned`);
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

  it('down leaves no process and no folder of the cluster', async () => {
    const r = ok(await dvote([...base, 'down', '--volumes', '--json'], env));
    expect((r.json?.removed as { nodes: string[] }).nodes.length).toBe(3);
    const dir = join(stateDir, 'clusters', cluster);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    const s = await dvote([...base, 'status', '--json'], env);
    expect(s.code).toBe(2); // no such cluster
  });
});

describe('five managers on local processes', () => {
  it('survive two leader kills', async () => {
    const b5 = ['--cluster', `${cluster}-five`];
    ok(await dvote([...b5, 'up', '--runtime', 'process', '--managers', '5', '--brokers', '0', '--shards', '0'], env));
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

describe('bad input changes nothing', () => {
  const bad = ['--cluster', `${cluster}-bad`];
  it('unknown flag -> exit 2', async () => {
    const r = await dvote([...bad, 'up', '--manager', '3'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--manager'/);
  });
  it('--managers 0 -> exit 2 naming the limit', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'process', '--managers', '0'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/managers: managers must be at least 1/);
  });
  it('a topology with contradictions -> exit 2 with every problem; nothing created', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'process', '--shards', '3', '--brokers', '0', '--replicas', 'x'], env);
    expect(r.code).toBe(2);
    const r2 = await dvote([...bad, 'up', '--runtime', 'process', '--shards', '3', '--brokers', '0'], env);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/brokers: replication "log" .* needs at least 1 broker/);
    expect(existsSync(join(stateDir, 'clusters', `${cluster}-bad`))).toBe(false);
  });
  it('no Docker daemon with --runtime docker -> exit 3 naming the fix', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'docker', '--managers', '1', '--brokers', '0', '--shards', '0'], {
      ...env,
      DOCKER_HOST: 'unix:///nonexistent/docker.sock',
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cannot reach Docker.*(scripts\/setup\.sh|--runtime process)/);
  });
});
