// Issue 3 acceptance on the docker runtime, through the real CLI:
// up -> status (one leader, 3 healthy) -> kill leader -> new leader within 2 s,
// KV survives -> up again converges -> scale 5 then 3 -> down leaves nothing.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { expectOneLeaderAllHealthy, managerClient, ok, status, waitForNewLeader } from './cli-managers.shared.js';

const env: Record<string, string> = {};
const cluster = `td${process.pid % 10000}`;
const base = ['--cluster', cluster];
const up3 = [...base, 'up', '--runtime', 'docker', '--managers', '3', '--brokers', '0', '--shards', '0'];

async function labelled(kind: 'ps' | 'network' | 'volume', c: string): Promise<string[]> {
  const args = kind === 'ps' ? ['ps', '-a'] : [kind, 'ls'];
  const r = await execa('docker', [...args, '-q', '--filter', `label=io.dvote.cluster=${c}`]);
  return r.stdout.split('\n').filter(Boolean);
}

beforeAll(async () => {
  const r = await execa('docker', ['info'], { reject: false });
  if (r.exitCode !== 0) throw new Error('Docker is not reachable: these tests need it (run scripts/setup.sh)');
});

afterAll(async () => {
  await dvote([...base, 'down', '--volumes'], env);
  await dvote(['--cluster', `${cluster}-five`, 'down', '--volumes'], env);
});

describe('dvote managers on docker', () => {
  let leader = '';

  beforeAll(async () => {
    const r = ok(await dvote([...up3, '--json'], env));
    expect(r.json?.schema).toBe('dvote.up/v1');
    expect(r.json?.runtime).toBe('docker');
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
    console.log(`docker runtime: new leader ${next} seen ${ms.toFixed(0)} ms after the kill command returned`);
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

  it('down leaves no container, network or volume carrying the cluster label', async () => {
    const r = ok(await dvote([...base, 'down', '--volumes', '--json'], env));
    expect((r.json?.removed as { nodes: string[] }).nodes.length).toBe(3);
    expect(await labelled('ps', cluster)).toEqual([]);
    expect(await labelled('network', cluster)).toEqual([]);
    expect(await labelled('volume', cluster)).toEqual([]);
    const s = await dvote([...base, 'status', '--json'], env);
    expect(s.code).toBe(2); // no such cluster
  });
});

describe('five managers on docker', () => {
  it('survive two leader kills', async () => {
    const b5 = ['--cluster', `${cluster}-five`];
    ok(await dvote([...b5, 'up', '--runtime', 'docker', '--managers', '5', '--brokers', '0', '--shards', '0'], env));
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

describe('bad input on docker changes nothing', () => {
  it('a topology with contradictions -> exit 2; no container, network or volume created', async () => {
    const c = `${cluster}-bad`;
    const r = await dvote(['--cluster', c, 'up', '--runtime', 'docker', '--shards', '3', '--brokers', '0'], env);
    expect(r.code).toBe(2);
    const r2 = await dvote(['--cluster', c, 'up', '--runtime', 'docker', '--managers', '0'], env);
    expect(r2.code).toBe(2);
    expect(await labelled('ps', c)).toEqual([]);
    expect(await labelled('network', c)).toEqual([]);
  });
});
