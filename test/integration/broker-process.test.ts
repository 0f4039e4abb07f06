// Issue 4 acceptance on the process runtime, through the real CLI and real
// broker processes: 3 managers + 3 brokers, RF 3.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerClient, BrokerRequestError } from '../../src/client/broker-client.js';
import { Consumer } from '../../src/client/consumer.js';
import { Producer } from '../../src/client/producer.js';
import { encodeFrames } from '../../src/services/broker/message-frames.js';
import { dvote } from '../utils/cli.js';
import { brokerClient, ok, produceThroughLeaderKills, statusDoc, waitForLeaders } from './broker-acceptance.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-brokers-'));
const env = { DVOTE_STATE_DIR: stateDir };
const cluster = `tb${process.pid % 10000}`;
const base = ['--cluster', cluster];
const enc = new TextEncoder();
const dec = new TextDecoder();

beforeAll(async () => {
  ok(await dvote([...base, 'up', '--runtime', 'process', '--managers', '3', '--brokers', '3', '--shards', '0', '--json'], env));
}, 180_000);

afterAll(async () => {
  await dvote([...base, 'down', '--volumes'], env);
  rmSync(stateDir, { recursive: true, force: true });
}, 120_000);

describe('brokers on local processes (3 brokers, RF 3)', () => {
  it('status lists the brokers healthy, with partition rows once a topic exists', async () => {
    const client = await brokerClient(base, env);
    try {
      const t = await client.createTopic('status-t', { partitions: 2 });
      expect(t.partitions).toHaveLength(2);
      for (const p of t.partitions) expect(new Set(p.replicas).size).toBe(3);
      // Idempotent create; a different partition count is refused.
      expect((await client.createTopic('status-t', { partitions: 2 })).partitions.map((p) => p.replicas)).toEqual(t.partitions.map((p) => p.replicas));
      await expect(client.createTopic('status-t', { partitions: 5 })).rejects.toMatchObject({ status: 409 });
      const s = await waitForLeaders(base, env, 'status-t', 2, 30_000);
      expect(s.nodes.filter((n) => n.role === 'broker' && n.healthy)).toHaveLength(3);
      const rows = s.partitions.filter((p) => p.topic === 'status-t');
      for (const r of rows) expect([...r.replicas].sort()).toEqual(['broker-1', 'broker-2', 'broker-3']);
      expect((await client.listTopics()).map((x) => x.name)).toContain('status-t');
      const human = await dvote([...base, 'status'], env);
      expect(human.stdout + human.stderr).toMatch(/status-t\/1/);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('100,000 messages through two SIGKILLs of the partition leader: each acknowledged one consumed exactly once, in order; offsets survive a restart of every broker', async () => {
    await produceThroughLeaderKills(base, env, { topic: 'acceptance', messages: 100_000, producers: 4, batch: 20 });
  }, 240_000);

  it('the original correctness test: concurrent producers and consumers, order checked per partition and per producer', async () => {
    const client = await brokerClient(base, env);
    try {
      await client.createTopic('orig', { partitions: 3 });
      await waitForLeaders(base, env, 'orig', 3, 30_000);
      const consumers = await Promise.all([0, 1, 2].map(() => Consumer.register(client, 'orig')));
      const oneP = await Consumer.register(client, 'orig', { partition: 1 });
      const producers = await Promise.all([0, 1, 2, 3].map(() => Producer.register(client, 'orig', { lingerMs: 2, maxInFlight: 1 })));
      const perProducer = 1500;
      let done = false;
      const received = consumers.map(() => [] as { partition: number; offset: number; value: string }[]);
      const consuming = consumers.map(async (c, k) => {
        for (;;) {
          const got = await c.dequeue(50);
          for (const m of got) received[k]!.push({ partition: m.partition, offset: m.offset, value: dec.decode(m.value) });
          if (got.length === 0) {
            if (done && (await c.size()) === 0) return;
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      });
      const sent = new Map<string, { partition: number; offset: number }>();
      await Promise.all(
        producers.map(async (p, k) => {
          const inflight: Promise<void>[] = [];
          for (let i = 0; i < perProducer; i++) {
            const v = `prod${k}-${String(i).padStart(5, '0')}`;
            inflight.push(p.send(v).then((r) => void sent.set(v, r)));
            if (inflight.length >= 64) await Promise.all(inflight.splice(0));
          }
          await Promise.all(inflight);
        }),
      );
      done = true;
      await Promise.all(consuming);
      expect(sent.size).toBe(4 * perProducer);
      for (const [k, got] of received.entries()) {
        expect(got).toHaveLength(sent.size);
        expect(new Set(got.map((g) => g.value)).size).toBe(sent.size);
        const last = new Map<number, number>();
        const lastSeqOfProducer = new Map<string, number>();
        for (const g of got) {
          expect(g.offset, `consumer ${k} partition ${g.partition}`).toBe((last.get(g.partition) ?? -1) + 1);
          last.set(g.partition, g.offset);
          expect(sent.get(g.value)).toEqual({ partition: g.partition, offset: g.offset });
          // A producer's messages to one partition come out in the order it sent them.
          const [prod, seq] = g.value.split('-') as [string, string];
          const key = `${prod}/${g.partition}`;
          expect(Number(seq)).toBeGreaterThan(lastSeqOfProducer.get(key) ?? -1);
          lastSeqOfProducer.set(key, Number(seq));
        }
      }
      const onlyOne = await oneP.dequeue(10_000);
      expect(onlyOne.every((m) => m.partition === 1)).toBe(true);
      expect(onlyOne.length).toBe([...sent.values()].filter((x) => x.partition === 1).length);
    } finally {
      await client.close();
    }
  }, 120_000);

  it('bad input gets a 4xx with a clear message and stores nothing', async () => {
    const client = await brokerClient(base, env);
    try {
      await client.createTopic('bad', { partitions: 1 });
      await waitForLeaders(base, env, 'bad', 1, 30_000);
      const consumer = await client.registerTopicConsumer('bad');
      await client.append('bad', 0, ['ok']);
      const t = await client.topic('bad');
      const leader = t.partitions[0]!.leaderHttp!;
      const hw = async () => (await client.fetch('bad', 0, 0, { maxMessages: 10_000 })).highWatermark;
      expect(await hw()).toBe(1);
      const post = async (path: string, body: Uint8Array | string, type = 'application/json') => {
        const r = await request(`http://${leader}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
        return { status: r.statusCode, body: (await r.body.json()) as { error: string } };
      };
      // unknown topic (through the client and straight to a broker)
      await expect(client.append('nope', 0, ['x'])).rejects.toMatchObject({ status: 404, message: expect.stringMatching(/unknown topic "nope"/) });
      expect(await post('/v1/partitions/nope/0/append', encodeFrames([enc.encode('x')]), 'application/octet-stream')).toMatchObject({ status: 404, body: { error: expect.stringMatching(/unknown topic/) } });
      // a partition that does not exist
      await expect(client.append('bad', 7, ['x'])).rejects.toMatchObject({ status: 404, message: expect.stringMatching(/no partition 7/) });
      expect((await post('/v1/partitions/bad/7/append', encodeFrames([enc.encode('x')]), 'application/octet-stream')).status).toBe(404);
      expect((await post('/v1/partitions/bad/x/append', '{"messages":["a"]}')).status).toBe(400);
      // unknown consumer
      await expect(client.dequeue('bad', 0, 'c-unknown')).rejects.toMatchObject({ status: 404, message: expect.stringMatching(/unknown consumer "c-unknown"/) });
      await expect(client.size('bad', 0, 'c-unknown')).rejects.toMatchObject({ status: 404 });
      // oversized message and batch
      await expect(client.append('bad', 0, [new Uint8Array(1024 * 1024 + 1)])).rejects.toMatchObject({ status: 413, message: expect.stringMatching(/limit is 1048576/) });
      expect((await post('/v1/partitions/bad/0/append', new Uint8Array(5 * 1024 * 1024), 'application/octet-stream')).status).toBe(413);
      // malformed: truncated frames, bad JSON, wrong types, empty batch, half a producer id
      const framed = encodeFrames([enc.encode('abcdef')]);
      expect(await post('/v1/partitions/bad/0/append', framed.subarray(0, 7), 'application/octet-stream')).toMatchObject({ status: 400, body: { error: expect.stringMatching(/claims 6 bytes/) } });
      expect((await post('/v1/partitions/bad/0/append', '{"messages": [1, 2]}')).status).toBe(400);
      expect((await post('/v1/partitions/bad/0/append', '{not json')).status).toBe(400);
      expect((await post('/v1/partitions/bad/0/append', new Uint8Array(0), 'application/octet-stream')).status).toBe(400);
      expect((await post('/v1/partitions/bad/0/enqueue', '{"message": 5}')).status).toBe(400);
      const r = await request(`http://${leader}/v1/partitions/bad/0/append`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'x-producer-id': 'p1' }, body: framed });
      expect(r.statusCode).toBe(400);
      await r.body.text();
      expect((await post('/v1/partitions/bad/0/dequeue', JSON.stringify({ consumer: consumer.consumerId, max: 0 }))).status).toBe(400);
      const fetchBad = await request(`http://${leader}/v1/partitions/bad/0/messages?from=-1`);
      expect(fetchBad.statusCode).toBe(400);
      await fetchBad.body.text();
      // manager side: bad topic names and counts, unknown topic for producers/consumers
      await expect(client.createTopic('bad name!')).rejects.toMatchObject({ status: 400 });
      await expect(client.createTopic('zero', { partitions: 0 })).rejects.toMatchObject({ status: 400 });
      await expect(client.createTopic('toomany-rf', { replicationFactor: 4 })).rejects.toMatchObject({ status: 400 });
      await expect(client.registerProducer('nope')).rejects.toMatchObject({ status: 404 });
      await expect(client.registerTopicConsumer('nope')).rejects.toBeInstanceOf(BrokerRequestError);
      await expect(client.registerTopicConsumer('bad', { partition: 3 })).rejects.toMatchObject({ status: 404 });
      // nothing was stored by any of it
      expect(await hw()).toBe(1);
      expect((await client.size('bad', 0, consumer.consumerId)).size).toBe(1);
      expect((await client.listTopics()).map((x) => x.name)).not.toContain('zero');
    } finally {
      await client.close();
    }
  }, 60_000);

  it('concurrent single appends travel coalesced: each keeps its own offsets and deduplication; a bad one fails alone', async () => {
    const client = await brokerClient(base, env);
    try {
      await client.createTopic('many', { partitions: 1 });
      await waitForLeaders(base, env, 'many', 1, 30_000);
      const results = await Promise.allSettled(
        Array.from({ length: 300 }, (_, i) =>
          i === 150
            ? client.append('many', 0, [new Uint8Array(1024 * 1024 + 1), enc.encode('never')], { producerId: 'bad-one', seq: 0 })
            : client.append('many', 0, [`m${i}`], { producerId: `p${i % 7}`, seq: i }),
        ),
      );
      const bad = results[150]!;
      expect(bad.status).toBe('rejected');
      expect((bad as PromiseRejectedResult).reason).toMatchObject({ status: 413 });
      const ok = results.filter((r, i) => i !== 150) as PromiseFulfilledResult<{ firstOffset: number; lastOffset: number }>[];
      expect(ok.every((r) => r.status === 'fulfilled')).toBe(true);
      const offsets = ok.map((r) => r.value.firstOffset);
      expect(new Set(offsets).size).toBe(299);
      const f = await client.fetch('many', 0, 0, { maxMessages: 1000 });
      expect(f.highWatermark).toBe(299);
      results.forEach((r, i) => {
        if (i === 150) return;
        expect(dec.decode(f.messages[(r as PromiseFulfilledResult<{ firstOffset: number }>).value.firstOffset]!.value)).toBe(`m${i}`);
      });
      // The same (producer, seq) again, coalesced too: original offsets, nothing stored.
      const again = await Promise.all(Array.from({ length: 20 }, (_, i) => client.append('many', 0, [`m${i}`], { producerId: `p${i % 7}`, seq: i })));
      expect(again.map((a) => a.firstOffset)).toEqual(offsets.slice(0, 20));
      expect((await client.fetch('many', 0, 0, { maxMessages: 1000 })).highWatermark).toBe(299);
      // They really travelled together: the leader served append-many requests.
      const leaderHttp = (await client.topic('many')).partitions[0]!.leaderHttp!;
      const metrics = await (await request(`http://${leaderHttp}/metrics`)).body.text();
      const served = [...metrics.matchAll(/dvote_broker_requests_total\{[^}]*route="\/v1\/partitions\/:topic\/:p\/append-many"[^}]*status="200"[^}]*\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      expect(served).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('a broker killed for good: its replicas move to the other brokers, every partition keeps RF 3 and its data', async () => {
    ok(await dvote([...base, 'scale', '--brokers', '4'], env));
    const client = await brokerClient(base, env);
    try {
      await client.managers.put('/dvote/config/broker-replace-after-ms', '2000');
      await client.createTopic('rr', { partitions: 4, replicationFactor: 3 });
      await waitForLeaders(base, env, 'rr', 4, 30_000);
      for (let p = 0; p < 4; p++) await client.append('rr', p, Array.from({ length: 50 }, (_, i) => `rr-${p}-${i}`));
      const placed = await client.topic('rr');
      const victim = 'broker-4';
      const hosted = placed.partitions.filter((p) => p.replicas.includes(victim)).map((p) => p.partition);
      expect(hosted.length).toBeGreaterThan(0);
      ok(await dvote([...base, 'kill', victim], env));
      const t0 = Date.now();
      const s = await waitForLeaders(base, env, 'rr', 4, 60_000, (p) => p.replicas.length === 3 && !p.replicas.includes(victim) && p.learners.length === 0 && p.reportedBy.length === 3);
      console.log(`re-replicated partitions ${hosted.join(',')} of ${victim} in ${Date.now() - t0} ms`);
      for (const row of s.partitions.filter((p) => p.topic === 'rr')) {
        expect(new Set(row.replicas).size).toBe(3);
        expect(row.replicas).not.toContain(victim);
      }
      const after = await client.topic('rr');
      for (const p of after.partitions) expect(p.replicas).not.toContain(victim);
      // Every replica of every partition holds all 50 messages (the newcomers caught up).
      const status = await statusDoc(base, env);
      for (const n of status.nodes.filter((x) => x.role === 'broker' && x.name !== victim)) {
        const h = (await (await request(`${n.endpoint}/health`)).body.json()) as { partitions: { topic: string; partition: number; highWatermark: number }[] };
        for (const p of h.partitions.filter((x) => x.topic === 'rr')) expect(p.highWatermark, `${n.name} rr/${p.partition}`).toBe(50);
      }
      for (let p = 0; p < 4; p++) {
        const f = await client.fetch('rr', p, 0, { maxMessages: 100 });
        expect(f.messages.map((m) => dec.decode(m.value))).toEqual(Array.from({ length: 50 }, (_, i) => `rr-${p}-${i}`));
      }
      // Still writable with the victim gone.
      await client.append('rr', hosted[0]!, ['after']);
    } finally {
      await client.close();
    }
  }, 150_000);

  it('consumer groups split the partitions and share one offset per partition', async () => {
    const client: BrokerClient = await brokerClient(base, env);
    try {
      await client.createTopic('grp', { partitions: 3 });
      await waitForLeaders(base, env, 'grp', 3, 30_000);
      for (let p = 0; p < 3; p++) await client.append('grp', p, Array.from({ length: 10 }, (_, i) => `g${p}-${i}`));
      const a = await Consumer.joinGroup(client, 'grp', 'g1', 'member-a');
      const b = await Consumer.joinGroup(client, 'grp', 'g1', 'member-b');
      await a.refreshAssignment();
      expect([...a.assignedPartitions, ...b.assignedPartitions].sort()).toEqual([0, 1, 2]);
      const got: string[] = [];
      for (const c of [a, b]) for (let m = await c.dequeue(100); m.length > 0; m = await c.dequeue(100)) got.push(...m.map((x) => dec.decode(x.value)));
      expect(got.sort()).toEqual(Array.from({ length: 3 }, (_, p) => Array.from({ length: 10 }, (_, i) => `g${p}-${i}`)).flat().sort());
      await b.close();
      await a.refreshAssignment();
      expect(a.assignedPartitions).toEqual([0, 1, 2]);
      expect(await a.dequeue(100)).toEqual([]);
    } finally {
      await client.close();
    }
  }, 60_000);
});
