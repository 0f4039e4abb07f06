// A broker that was down while its partition's log was snapshotted and
// compacted catches up from a snapshot (messages, consumer offsets and
// producer sequences), on real processes. Snapshots are forced every 50
// entries (DVOTE_BROKER_SNAPSHOT_ENTRIES, keeping 10 behind) so a short run
// compacts far past the stopped broker's log.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Consumer } from '../../src/client/consumer.js';
import { dvote } from '../utils/cli.js';
import { brokerClient, ok, statusDoc, waitForLeaders } from './broker-acceptance.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-brokers-snap-'));
const env = { DVOTE_STATE_DIR: stateDir, DVOTE_BROKER_SNAPSHOT_ENTRIES: '50', DVOTE_BROKER_KEEP_ENTRIES: '10' };
const cluster = `tbs${process.pid % 10000}`;
const base = ['--cluster', cluster];
const dec = new TextDecoder();

beforeAll(async () => {
  ok(await dvote([...base, 'up', '--runtime', 'process', '--managers', '3', '--brokers', '3', '--shards', '0', '--json'], env));
}, 180_000);

afterAll(async () => {
  await dvote([...base, 'down', '--volumes'], env);
  rmSync(stateDir, { recursive: true, force: true });
}, 120_000);

describe('partition snapshots on real brokers', () => {
  it('a broker stopped while the log was compacted catches up through a snapshot and can lead with all the data', async () => {
    const client = await brokerClient(base, env);
    try {
      await client.createTopic('snap', { partitions: 1 });
      await waitForLeaders(base, env, 'snap', 1, 30_000);
      const consumer = await Consumer.register(client, 'snap');
      const expected: string[] = [];
      const put = async (n: number, tag: string) => {
        for (let i = 0; i < n; i++) {
          const vals = [`${tag}-${i}-a`, `${tag}-${i}-b`];
          await client.append('snap', 0, vals, { producerId: 'snap-producer', seq: expected.length });
          expected.push(...vals);
        }
      };
      await put(30, 'before');
      expect((await consumer.dequeue(7)).length).toBe(7);
      const leader = (await client.topic('snap')).partitions[0]!.leader!;
      const follower = ['broker-1', 'broker-2', 'broker-3'].find((b) => b !== leader)!;
      ok(await dvote([...base, 'kill', follower], env));
      // 300 more entries: several snapshots, the log compacted far beyond the stopped follower.
      await put(300, 'while-down');
      expect((await consumer.dequeue(5)).length).toBe(5);
      ok(await dvote([...base, 'up', '--runtime', 'process', '--managers', '3', '--brokers', '3', '--shards', '0'], env));
      // The follower catches up: its replica reports every message.
      const s0 = Date.now();
      let hw = -1;
      while (Date.now() - s0 < 30_000) {
        const node = (await statusDoc(base, env)).nodes.find((n) => n.name === follower)!;
        const h = (await (await request(`${node.endpoint}/health`)).body.json()) as { partitions: { topic: string; highWatermark: number }[] };
        hw = h.partitions.find((p) => p.topic === 'snap')?.highWatermark ?? -1;
        if (hw === expected.length) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(hw).toBe(expected.length);
      // Make it the leader and read everything from it: messages, the consumer's offset, the producer's sequences.
      const now = await waitForLeaders(base, env, 'snap', 1, 30_000);
      const current = now.partitions.find((p) => p.topic === 'snap')!.leader!;
      // (It may lead already: the preferred replica takes leadership back once caught up.)
      if (current !== follower) {
        const endpoint = now.nodes.find((n) => n.name === current)!.endpoint;
        const t = await request(`${endpoint}/v1/partitions/snap/0/transfer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: follower }) });
        expect(t.statusCode).toBe(200);
        await t.body.text();
      }
      await waitForLeaders(base, env, 'snap', 1, 30_000, (p) => p.leader === follower);
      const f = await client.fetch('snap', 0, 0, { maxMessages: 10_000 });
      expect(f.messages.map((m) => dec.decode(m.value))).toEqual(expected);
      expect(await consumer.size()).toBe(expected.length - 12);
      const again = await client.append('snap', 0, ['before-0-a', 'before-0-b'], { producerId: 'snap-producer', seq: 0 });
      expect(again).toEqual({ firstOffset: 0, lastOffset: 1 });
      expect((await client.fetch('snap', 0, 0, { maxMessages: 10_000 })).highWatermark).toBe(expected.length);
    } finally {
      await client.close();
    }
  }, 150_000);
});
