// Issue 4 acceptance on the docker runtime: 3 managers + 3 brokers as
// containers; 100,000 messages produced while the partition leader is
// SIGKILLed twice (docker kill), each acknowledged message consumed exactly
// once per consumer and in order, offsets surviving a restart of every
// broker container. The client reaches the brokers through their published
// ports (they advertise container addresses to each other).
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { ok, produceThroughLeaderKills, statusDoc } from './broker-acceptance.shared.js';

const env: Record<string, string> = {};
const cluster = `tbd${process.pid % 10000}`;
const base = ['--cluster', cluster];

beforeAll(async () => {
  const r = await execa('docker', ['info'], { reject: false });
  if (r.exitCode !== 0) throw new Error('Docker is not reachable: these tests need it (run scripts/setup.sh)');
  ok(await dvote([...base, 'up', '--runtime', 'docker', '--managers', '3', '--brokers', '3', '--shards', '0', '--json'], env));
}, 300_000);

afterAll(async () => {
  await dvote([...base, 'down', '--volumes'], env);
}, 120_000);

describe('brokers on docker (3 brokers, RF 3)', () => {
  it('three healthy broker containers', async () => {
    const s = await statusDoc(base, env);
    expect(s.nodes.filter((n) => n.role === 'broker' && n.healthy)).toHaveLength(3);
  });

  it('100,000 messages through two SIGKILLs of the partition leader: exactly once, in order; offsets survive a restart of every broker', async () => {
    await produceThroughLeaderKills(base, env, { topic: 'acceptance', messages: 100_000, producers: 4, batch: 20, mapEndpoints: true });
  }, 300_000);
});
