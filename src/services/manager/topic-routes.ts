// The managers' side of the broker log: broker registration (service
// discovery), topics and their partition placement, producers, consumers
// and consumer groups. Every change is a Raft-committed KV write (with
// compare-and-set where two requests could race); reads are linearizable
// unless ?stale=true. Followers forward writes to the leader, and reads that
// need live leader information (which broker leads which partition, learned
// from the brokers' heartbeats that only the leader receives).
//
// Routes (JSON):
//   POST /v1/brokers/register {id, http, raft}             a broker announces itself at start
//   GET  /v1/brokers                                        brokers with liveness and hosted partitions
//   GET  /v1/placement[?stale=true]                         {revision, brokers, topics}: what brokers poll
//   POST /v1/topics {name, partitions?, replicationFactor?} create (idempotent for the same name and count)
//   GET  /v1/topics                                         list
//   GET  /v1/topics/:name                                   placement with live leaders
//   POST /v1/topics/:name/producers {partition?}            register a producer -> {producerId}
//   POST /v1/topics/:name/consumers {partition?, from?}     register a consumer -> {consumerId, partitions, index}
//   GET  /v1/producers/:id   GET /v1/consumers/:id
//   POST /v1/topics/:name/groups/:group/members {member?}   join a consumer group -> {member, partitions, generation}
//   DELETE /v1/topics/:name/groups/:group/members/:member   leave
//   GET  /v1/topics/:name/groups/:group                     members and assignment
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { BrokerClient } from '../../client/broker-client.js';
import { assignGroupPartitions, balanceLeaders, defaultPartitionCount, loadOf, placeTopic } from '../../core/placement.js';
import {
  BROKER_KEYS,
  CLIENT_ID,
  MAX_PARTITIONS,
  TOPIC_NAME,
  type BrokerRecord,
  type ConsumerRecord,
  type GroupRecord,
  type PartitionReport,
  type PlacementDoc,
  type ProducerRecord,
  type TopicRecord,
} from '../broker/placement-records.js';
import type { NodeRecord } from './liveness.js';
import { HttpError, type ManagerNode } from './manager-node.js';

const hostPort = /^[^:\s]+:\d{1,5}$/;

export interface PartitionView {
  partition: number;
  replicas: string[];
  leader: string | null;
  leaderHttp: string | null;
  replicasHttp: string[];
}

export interface TopicView {
  name: string;
  replicationFactor: number;
  partitions: PartitionView[];
  createdAt: string;
}

export function readTopics(node: ManagerNode): TopicRecord[] {
  return node.state.kv.range(BROKER_KEYS.topicsPrefix).map(([, e]) => JSON.parse(e.value) as TopicRecord);
}

export function readBrokers(node: ManagerNode): BrokerRecord[] {
  return node.state.kv.range(BROKER_KEYS.brokersPrefix).map(([, e]) => JSON.parse(e.value) as BrokerRecord);
}

/** Brokers the failure detector holds alive (registered ones never heard of count as alive until judged). */
export function liveBrokers(node: ManagerNode): string[] {
  const records = new Map(node.liveness.records().map((r) => [r.id, r] as const));
  return readBrokers(node)
    .filter((b) => records.get(b.id)?.state !== 'dead')
    .map((b) => b.id);
}

/** Partition reports from the brokers' latest heartbeats (only the leader hears them). */
function heartbeatReports(node: ManagerNode): PartitionReport[] {
  if (!node.liveness.active) return [];
  const out: PartitionReport[] = [];
  for (const b of node.liveness.detector.view(Date.now())) {
    if (b.role !== 'broker' || b.silentMs > node.liveness.detector.timeoutMs) continue;
    const parts = (b.info as { partitions?: PartitionReport[] }).partitions;
    if (Array.isArray(parts)) out.push(...parts.map((p) => ({ ...p, reporter: b.id })));
  }
  return out;
}

export function topicView(node: ManagerNode, t: TopicRecord): TopicView {
  const brokers = new Map(readBrokers(node).map((b) => [b.id, b]));
  const reports = heartbeatReports(node);
  return {
    name: t.name,
    replicationFactor: t.replicationFactor,
    createdAt: t.createdAt,
    partitions: t.partitions.map((p) => {
      // The replica that says it leads, in the highest term heard.
      const leading = reports
        .filter((r) => r.topic === t.name && r.partition === p.partition && r.role === 'leader')
        .sort((a, b) => b.term - a.term)[0];
      const leader = leading ? (leading as PartitionReport & { reporter: string }).reporter : null;
      return {
        partition: p.partition,
        replicas: p.replicas,
        leader,
        leaderHttp: leader ? (brokers.get(leader)?.http ?? null) : null,
        replicasHttp: p.replicas.map((r) => brokers.get(r)?.http).filter((x): x is string => typeof x === 'string'),
      };
    }),
  };
}

async function forward(node: ManagerNode, req: FastifyRequest): Promise<never> {
  throw await node.forwardToLeader(req);
}

function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new HttpError(400, 'body must be a JSON object');
  return b as Record<string, unknown>;
}

function optionalInt(b: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new HttpError(400, `"${field}" must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function topicName(req: FastifyRequest): string {
  const name = (req.params as { name: string }).name;
  if (!TOPIC_NAME.test(name)) throw new HttpError(400, `bad topic name "${name}": use 1-100 letters, digits, ".", "_" or "-"`);
  return name;
}

function requireTopic(node: ManagerNode, name: string): TopicRecord {
  const t = node.state.getJson<TopicRecord>(BROKER_KEYS.topic(name));
  if (!t) throw new HttpError(404, `unknown topic "${name}": create it first (POST /v1/topics)`, { reason: 'unknown topic' });
  return t;
}

function requirePartition(t: TopicRecord, partition: number | undefined): void {
  if (partition !== undefined && !t.partitions.some((p) => p.partition === partition)) {
    throw new HttpError(404, `topic "${t.name}" has no partition ${partition} (it has ${t.partitions.length}: 0..${t.partitions.length - 1})`, {
      reason: 'unknown partition',
    });
  }
}

async function casJson(node: ManagerNode, key: string, expected: string | null, value: unknown): Promise<boolean> {
  const r = await node.proposeLocal({ op: 'cas', key, expected, value: JSON.stringify(value) });
  return r.op === 'cas' && r.ok;
}

export function registerTopicRoutes(node: ManagerNode): void {
  const app = node.app;
  let brokerClient: BrokerClient | null = null;
  const brokers = () => (brokerClient ??= new BrokerClient({ managers: [node.config.advertise.http], timeoutMs: 15_000, connections: 4 }));
  app.addHook('onClose', async () => {
    await brokerClient?.close();
  });

  app.post('/v1/brokers/register', async (req) => {
    const b = body(req);
    if (typeof b.id !== 'string' || !CLIENT_ID.test(b.id) || typeof b.http !== 'string' || typeof b.raft !== 'string') {
      throw new HttpError(400, 'body must be {"id": string, "http": "host:port", "raft": "host:port"}');
    }
    if (!hostPort.test(b.http) || !hostPort.test(b.raft)) throw new HttpError(400, 'http and raft must be "host:port"');
    if (!node.group.isLeader) return forward(node, req);
    const prev = node.state.getJson<BrokerRecord>(BROKER_KEYS.broker(b.id));
    if (prev && prev.http === b.http && prev.raft === b.raft) return { ...prev, changed: false };
    const rec: BrokerRecord = { id: b.id, http: b.http, raft: b.raft, registeredAt: prev?.registeredAt ?? new Date().toISOString() };
    await node.proposeLocal({ op: 'put', key: BROKER_KEYS.broker(b.id), value: JSON.stringify(rec) });
    node.log.info({ broker: rec.id, http: rec.http, raft: rec.raft }, 'broker registered');
    return { ...rec, changed: true };
  });

  app.get('/v1/brokers', async (req) => {
    if (!node.group.isLeader && (req.query as Record<string, string>).stale !== 'true') return forward(node, req);
    const records = new Map<string, NodeRecord>(node.liveness.records().map((r) => [r.id, r]));
    const reports = heartbeatReports(node) as (PartitionReport & { reporter: string })[];
    return {
      brokers: readBrokers(node).map((b) => ({
        ...b,
        state: records.get(b.id)?.state ?? 'unknown',
        since: records.get(b.id)?.since ?? null,
        partitions: reports.filter((r) => r.reporter === b.id).map(({ reporter: _r, ...p }) => p),
      })),
    };
  });

  app.get('/v1/placement', async (req) => {
    if ((req.query as Record<string, string>).stale !== 'true') await node.readBarrier();
    const doc: PlacementDoc = { revision: node.state.kv.currentRevision, brokers: readBrokers(node), topics: readTopics(node) };
    return doc;
  });

  app.post('/v1/topics', async (req, reply) => {
    const b = body(req);
    if (typeof b.name !== 'string' || !TOPIC_NAME.test(b.name)) {
      throw new HttpError(400, 'body must be {"name": string, "partitions"?: int, "replicationFactor"?: int}; names use 1-100 letters, digits, ".", "_" or "-"');
    }
    const partitions = optionalInt(b, 'partitions', 1, MAX_PARTITIONS);
    const rf = optionalInt(b, 'replicationFactor', 1, 7);
    if (!node.group.isLeader) return forward(node, req);
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = node.state.kv.get(BROKER_KEYS.topic(b.name));
      if (existing) {
        const t = JSON.parse(existing.value) as TopicRecord;
        if (partitions !== undefined && partitions !== t.partitions.length) {
          throw new HttpError(409, `topic "${t.name}" exists with ${t.partitions.length} partitions, not ${partitions}`, { reason: 'exists' });
        }
        if (rf !== undefined && rf !== t.replicationFactor) {
          throw new HttpError(409, `topic "${t.name}" exists with replication factor ${t.replicationFactor}, not ${rf}`, { reason: 'exists' });
        }
        return reply.code(200).send({ ...topicView(node, t), created: false });
      }
      const live = liveBrokers(node);
      if (live.length === 0) throw new HttpError(503, 'no live broker registered yet; start brokers (dvote up --brokers N) and retry', { reason: 'no brokers' });
      const setting = Number(node.config.settings?.replicationFactor);
      const wantRf = rf ?? Math.min(Number.isInteger(setting) && setting > 0 ? setting : 3, live.length);
      if (wantRf > live.length) {
        throw new HttpError(400, `replication factor ${wantRf} needs ${wantRf} live brokers; ${live.length} are live (${live.join(', ')})`);
      }
      const count = partitions ?? defaultPartitionCount(live.length);
      const others = readTopics(node);
      const placed = placeTopic({ partitions: count, replicationFactor: wantRf, brokers: live, existing: loadOf(live, others.map((t) => t.partitions)) });
      const rec: TopicRecord = {
        name: b.name,
        replicationFactor: wantRf,
        createdAt: new Date().toISOString(),
        consumers: 0,
        partitions: placed.map((p) => ({ partition: p.partition, replicas: p.replicas, bootstrapVoters: [...p.replicas], bootstrap: [...p.replicas] })),
      };
      // Rebalance preferred leaders over every topic now that this one exists.
      const balanced = balanceLeaders([...others.map((t) => t.partitions), rec.partitions], live);
      const writes: { op: 'put'; key: string; value: string }[] = [];
      const compare: { key: string; value: string | null }[] = [{ key: BROKER_KEYS.topic(rec.name), value: null }];
      others.forEach((t, i) => {
        const order = balanced[i]!;
        const changed = t.partitions.some((p, k) => p.replicas.join() !== order[k]!.replicas.join());
        if (!changed) return;
        const updated: TopicRecord = { ...t, partitions: t.partitions.map((p, k) => ({ ...p, replicas: order[k]!.replicas })) };
        compare.push({ key: BROKER_KEYS.topic(t.name), value: node.state.kv.get(BROKER_KEYS.topic(t.name))!.value });
        writes.push({ op: 'put', key: BROKER_KEYS.topic(t.name), value: JSON.stringify(updated) });
      });
      rec.partitions = rec.partitions.map((p, k) => ({ ...p, replicas: balanced[others.length]![k]!.replicas }));
      writes.push({ op: 'put', key: BROKER_KEYS.topic(rec.name), value: JSON.stringify(rec) });
      const r = await node.proposeLocal({ op: 'txn', compare, success: writes });
      if (r.op === 'txn' && r.succeeded) {
        node.log.info({ topic: rec.name, partitions: rec.partitions.map((p) => p.replicas.join(',')) }, 'topic created');
        return reply.code(201).send({ ...topicView(node, rec), created: true });
      }
    }
    throw new HttpError(503, 'topic metadata kept changing while creating the topic; retry');
  });

  app.get('/v1/topics', async (req) => {
    if ((req.query as Record<string, string>).stale !== 'true') await node.readBarrier();
    return { topics: readTopics(node).map((t) => ({ name: t.name, partitions: t.partitions.length, replicationFactor: t.replicationFactor, createdAt: t.createdAt })) };
  });

  app.get('/v1/topics/:name', async (req) => {
    const name = topicName(req);
    // Leaders are known from heartbeats, which only the leader receives.
    if (!node.group.isLeader) return forward(node, req);
    await node.readBarrier();
    return topicView(node, requireTopic(node, name));
  });

  app.post('/v1/topics/:name/producers', async (req, reply) => {
    const name = topicName(req);
    const b = body(req);
    const partition = optionalInt(b, 'partition', 0, MAX_PARTITIONS - 1);
    if (!node.group.isLeader) return forward(node, req);
    const t = requireTopic(node, name);
    requirePartition(t, partition);
    const rec: ProducerRecord = { id: `p-${randomUUID()}`, topic: name, partition: partition ?? null, createdAt: new Date().toISOString() };
    await node.proposeLocal({ op: 'put', key: BROKER_KEYS.producer(rec.id), value: JSON.stringify(rec) });
    return reply.code(201).send({ producerId: rec.id, topic: name, partition: rec.partition });
  });

  app.get('/v1/producers/:id', async (req, reply) => {
    await node.readBarrier();
    const id = (req.params as { id: string }).id;
    const rec = node.state.getJson<ProducerRecord>(BROKER_KEYS.producer(id));
    if (!rec) return reply.code(404).send({ error: `unknown producer "${id}": register it first (POST /v1/topics/<topic>/producers)` });
    return rec;
  });

  app.post('/v1/topics/:name/consumers', async (req, reply) => {
    const name = topicName(req);
    const b = body(req);
    const partition = optionalInt(b, 'partition', 0, MAX_PARTITIONS - 1);
    const from = b.from === undefined ? 'earliest' : b.from;
    if (from !== 'earliest' && from !== 'latest') throw new HttpError(400, '"from" must be "earliest" or "latest"');
    if (!node.group.isLeader) return forward(node, req);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = node.state.kv.get(BROKER_KEYS.topic(name));
      const t = requireTopic(node, name);
      requirePartition(t, partition);
      const id = `c-${randomUUID()}`;
      const partitions = partition !== undefined ? [partition] : t.partitions.map((p) => p.partition);
      // Registered on the partitions first (idempotent), so a committed consumer can always dequeue.
      await Promise.all(partitions.map((p) => brokers().registerConsumer(name, p, id, from)));
      const rec: ConsumerRecord = { id, topic: name, partition: partition ?? null, partitions, index: t.consumers, createdAt: new Date().toISOString() };
      const r = await node.proposeLocal({
        op: 'txn',
        compare: [{ key: BROKER_KEYS.topic(name), value: cur!.value }],
        success: [
          { op: 'put', key: BROKER_KEYS.topic(name), value: JSON.stringify({ ...t, consumers: t.consumers + 1 }) },
          { op: 'put', key: BROKER_KEYS.consumer(id), value: JSON.stringify(rec) },
        ],
      });
      if (r.op === 'txn' && r.succeeded) return reply.code(201).send({ consumerId: id, topic: name, partition: rec.partition, partitions, index: rec.index });
    }
    throw new HttpError(503, 'topic metadata kept changing while registering the consumer; retry');
  });

  app.get('/v1/consumers/:id', async (req, reply) => {
    await node.readBarrier();
    const id = (req.params as { id: string }).id;
    const rec = node.state.getJson<ConsumerRecord>(BROKER_KEYS.consumer(id));
    if (!rec) return reply.code(404).send({ error: `unknown consumer "${id}": register it first (POST /v1/topics/<topic>/consumers)` });
    return rec;
  });

  app.post('/v1/topics/:name/groups/:group/members', async (req, reply) => {
    const name = topicName(req);
    const group = (req.params as { group: string }).group;
    if (!CLIENT_ID.test(group)) throw new HttpError(400, `bad group name "${group}"`);
    const b = body(req);
    const member = b.member === undefined ? `m-${randomUUID()}` : b.member;
    if (typeof member !== 'string' || !CLIENT_ID.test(member)) throw new HttpError(400, '"member" must be a name of letters, digits, ".", "_", ":" or "-"');
    if (!node.group.isLeader) return forward(node, req);
    const t = requireTopic(node, name);
    const key = BROKER_KEYS.group(name, group);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = node.state.kv.get(key);
      const g: GroupRecord = cur ? (JSON.parse(cur.value) as GroupRecord) : { topic: name, group, members: [], generation: 0 };
      if (!cur) await Promise.all(t.partitions.map((p) => brokers().registerConsumer(name, p.partition, `group:${group}`, 'earliest')));
      const next: GroupRecord = g.members.includes(member) ? g : { ...g, members: [...g.members, member], generation: g.generation + 1 };
      if (next !== g && !(await casJson(node, key, cur?.value ?? null, next))) continue;
      const assignment = assignGroupPartitions(next.members, t.partitions.length);
      return reply.code(200).send({ topic: name, group, member, consumer: `group:${group}`, generation: next.generation, members: next.members, partitions: assignment.get(member) ?? [] });
    }
    throw new HttpError(503, 'group membership kept changing; retry');
  });

  app.delete('/v1/topics/:name/groups/:group/members/:member', async (req) => {
    const name = topicName(req);
    const { group, member } = req.params as { group: string; member: string };
    if (!node.group.isLeader) return forward(node, req);
    const key = BROKER_KEYS.group(name, group);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = node.state.kv.get(key);
      if (!cur) throw new HttpError(404, `topic "${name}" has no consumer group "${group}"`);
      const g = JSON.parse(cur.value) as GroupRecord;
      if (!g.members.includes(member)) return { left: false, generation: g.generation };
      const next = { ...g, members: g.members.filter((m) => m !== member), generation: g.generation + 1 };
      if (await casJson(node, key, cur.value, next)) return { left: true, generation: next.generation };
    }
    throw new HttpError(503, 'group membership kept changing; retry');
  });

  app.get('/v1/topics/:name/groups/:group', async (req) => {
    const name = topicName(req);
    const group = (req.params as { group: string }).group;
    await node.readBarrier();
    const t = requireTopic(node, name);
    const g = node.state.getJson<GroupRecord>(BROKER_KEYS.group(name, group));
    if (!g) throw new HttpError(404, `topic "${name}" has no consumer group "${group}"`);
    const a = assignGroupPartitions(g.members, t.partitions.length);
    return { ...g, consumer: `group:${group}`, assignment: Object.fromEntries(a) };
  });
}
