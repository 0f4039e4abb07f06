// Client SDK for the broker log. Metadata (topics, placement, producers,
// consumers, groups) comes from the managers through ManagerClient (any
// manager; it fails over by itself). Data goes straight to each partition's
// leader broker:
//
// - Leader discovery: the managers' placement names the leader each broker
//   last reported; a broker that is not the leader answers 421 with the
//   leader's id and HTTP address, which the client follows at once. On a
//   connection error, 503 (no leader yet) or 504 (outcome unknown) it waits
//   a little, asks the managers again and tries the next replica, until the
//   operation's deadline.
// - Retries are safe: appends carry (producerId, seq), and the partition
//   stores a (producerId, seq) once and answers a retry with the original
//   offsets. Without a producer id the client uses its own (one per client,
//   a fresh seq per append). Dequeues carry a request id, so a retried
//   dequeue returns the same messages rather than skipping them.
// - Fast path: one undici Agent (keep-alive pool per broker); batches travel
//   as length-prefixed frames (u32 big-endian length + bytes per message,
//   src/services/broker/message-frames.ts), both for append bodies and for
//   fetch replies; no JSON per message.
import { randomUUID } from 'node:crypto';
import { Agent } from 'undici';
import { httpCall } from './http-call.js';
import { CONNECT_TIMEOUT_MS, ManagerClient, ManagerRequestError } from './manager-client.js';
import { decodeFrames, encodeFrames } from '../services/broker/message-frames.js';

export interface PartitionInfo {
  partition: number;
  replicas: string[];
  leader: string | null;
  leaderHttp: string | null;
  replicasHttp?: string[];
}

export interface TopicInfo {
  name: string;
  replicationFactor: number;
  partitions: PartitionInfo[];
  created?: boolean;
}

export interface BrokerClientOptions {
  /** Manager HTTP "host:port" list. */
  managers: string[];
  /** Deadline of one logical operation, retries included (default 15 s). */
  timeoutMs?: number;
  /** Keep-alive connections per broker (default 16). */
  connections?: number;
  /**
   * Broker id -> "host:port" to use instead of the address the broker
   * advertises (e.g. a published port when the brokers run in containers).
   */
  brokerEndpoints?: Record<string, string>;
  /**
   * Requests in flight per partition for appends (default 4). Appends made
   * while that many are outstanding wait and then travel together in one
   * request (each keeps its own producer id, sequence and result), so many
   * concurrent single-message appends cost a few requests and one Raft entry
   * each round. 0 turns coalescing off (one request per append).
   */
  appendsInFlight?: number;
}

/** A broker or manager refused the request (4xx other than a leader redirect): retrying will not help. */
export class BrokerRequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error ?? `HTTP ${status}`));
    this.name = 'BrokerRequestError';
  }
}

/** No leader answered within the deadline; for writes the outcome is unknown (retry with the same producerId/seq). */
export class BrokerUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BrokerUnavailableError';
  }
}

export interface FetchResult {
  messages: { offset: number; value: Uint8Array }[];
  highWatermark: number;
}

export interface DequeueResult {
  messages: { offset: number; value: Uint8Array }[];
  /** The consumer's next offset on that partition. */
  offset: number;
}

const enc = new TextEncoder();

interface QueuedAppend {
  framed: Uint8Array;
  producerId: string;
  seq: number;
  resolve: (r: { firstOffset: number; lastOffset: number }) => void;
  reject: (e: Error) => void;
}

/** At most this many appends, or about this many bytes, travel in one coalesced request. */
const MAX_COALESCED_APPENDS = 1000;
const MAX_COALESCED_BYTES = 3 * 1024 * 1024;

/** The append-many body: per append u8 producer-id length | producer id | f64 seq | u32 length | frames. */
function encodeManyAppends(parts: QueuedAppend[]): Uint8Array {
  const ids = parts.map((p) => enc.encode(p.producerId));
  let size = 0;
  parts.forEach((p, i) => (size += 1 + ids[i]!.byteLength + 12 + p.framed.byteLength));
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let pos = 0;
  parts.forEach((p, i) => {
    const id = ids[i]!;
    if (id.byteLength > 255) throw new BrokerRequestError(400, { error: 'producer id longer than 255 bytes' });
    out[pos] = id.byteLength;
    out.set(id, pos + 1);
    view.setFloat64(pos + 1 + id.byteLength, p.seq);
    view.setUint32(pos + 1 + id.byteLength + 8, p.framed.byteLength);
    out.set(p.framed, pos + 1 + id.byteLength + 12);
    pos += 1 + id.byteLength + 12 + p.framed.byteLength;
  });
  return out;
}

interface CallOptions {
  method: 'GET' | 'POST';
  path: string;
  body?: Uint8Array | string;
  contentType?: string;
  headers?: Record<string, string>;
  /** Extra time the broker may hold the request (long poll). */
  holdMs?: number;
}

interface CallReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Uint8Array;
}

export class BrokerClient {
  readonly managers: ManagerClient;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly topics = new Map<string, TopicInfo>();
  private readonly leaders = new Map<string, string>();
  private readonly refreshing = new Map<string, Promise<TopicInfo>>();
  private readonly ownProducer = `auto-${randomUUID()}`;
  private ownSeq = 0;
  private readonly endpointOverride: Record<string, string>;
  private readonly appendsInFlight: number;
  private readonly appendQueues = new Map<string, QueuedAppend[]>();
  private readonly appendRequests = new Map<string, number>();

  constructor(opts: BrokerClientOptions) {
    this.endpointOverride = Object.fromEntries(Object.entries(opts.brokerEndpoints ?? {}).map(([k, v]) => [k, v.replace(/^https?:\/\//, '').replace(/\/$/, '')]));
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.managers = new ManagerClient({ endpoints: opts.managers, timeoutMs: this.timeoutMs, attemptTimeoutMs: 3_000, connections: 4 });
    this.agent = new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, pipelining: 1, connect: { timeout: CONNECT_TIMEOUT_MS } });
    this.appendsInFlight = opts.appendsInFlight ?? 4;
  }

  async close(): Promise<void> {
    await Promise.all([this.agent.close(), this.managers.close()]);
  }

  // ------------------------------------------------------------ metadata

  /** Idempotent: the same name (and partition count, if given) returns the existing topic. */
  async createTopic(name: string, opts: { partitions?: number; replicationFactor?: number } = {}): Promise<TopicInfo> {
    const r = await this.managerCall('POST', '/v1/topics', { name, ...opts });
    const t = r as unknown as TopicInfo;
    this.remember(t);
    return t;
  }

  /** Placement of a topic with the leaders the managers last heard of. */
  async topic(name: string): Promise<TopicInfo> {
    const t = (await this.managerCall('GET', `/v1/topics/${encodeURIComponent(name)}`)) as unknown as TopicInfo;
    this.remember(t);
    return t;
  }

  async listTopics(): Promise<{ name: string; partitions: number; replicationFactor: number }[]> {
    const r = await this.managerCall('GET', '/v1/topics');
    return r.topics as { name: string; partitions: number; replicationFactor: number }[];
  }

  async registerProducer(topic: string, opts: { partition?: number } = {}): Promise<{ producerId: string; partition: number | null }> {
    const r = await this.managerCall('POST', `/v1/topics/${encodeURIComponent(topic)}/producers`, opts);
    return { producerId: String(r.producerId), partition: (r.partition as number | null) ?? null };
  }

  /** Register a consumer of the whole topic or of one partition; it starts at the earliest message unless from = 'latest'. */
  async registerTopicConsumer(topic: string, opts: { partition?: number; from?: 'earliest' | 'latest' } = {}): Promise<{ consumerId: string; partitions: number[]; index: number }> {
    const r = await this.managerCall('POST', `/v1/topics/${encodeURIComponent(topic)}/consumers`, opts);
    return { consumerId: String(r.consumerId), partitions: r.partitions as number[], index: Number(r.index) };
  }

  async consumerRecord(consumerId: string): Promise<{ id: string; topic: string; partition: number | null; partitions: number[]; index: number }> {
    return (await this.managerCall('GET', `/v1/consumers/${encodeURIComponent(consumerId)}`)) as never;
  }

  async joinGroup(topic: string, group: string, member?: string): Promise<{ member: string; consumer: string; generation: number; partitions: number[]; members: string[] }> {
    return (await this.managerCall('POST', `/v1/topics/${encodeURIComponent(topic)}/groups/${encodeURIComponent(group)}/members`, member ? { member } : {})) as never;
  }

  async leaveGroup(topic: string, group: string, member: string): Promise<void> {
    await this.managerCall('DELETE', `/v1/topics/${encodeURIComponent(topic)}/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(member)}`);
  }

  async group(topic: string, group: string): Promise<{ members: string[]; generation: number; consumer: string; assignment: Record<string, number[]> }> {
    return (await this.managerCall('GET', `/v1/topics/${encodeURIComponent(topic)}/groups/${encodeURIComponent(group)}`)) as never;
  }

  private async managerCall(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Record<string, unknown>> {
    try {
      const r = await this.managers.request(method, path, body);
      return r.body;
    } catch (e) {
      if (e instanceof ManagerRequestError) throw new BrokerRequestError(e.status, e.body);
      throw e;
    }
  }

  private remember(t: TopicInfo): void {
    if (Object.keys(this.endpointOverride).length > 0) {
      for (const p of t.partitions) {
        if (p.leader && this.endpointOverride[p.leader]) p.leaderHttp = this.endpointOverride[p.leader]!;
        p.replicasHttp = p.replicas.map((r, i) => this.endpointOverride[r] ?? p.replicasHttp?.[i]).filter((x): x is string => typeof x === 'string');
      }
    }
    this.topics.set(t.name, t);
    for (const p of t.partitions) {
      if (p.leaderHttp) this.leaders.set(`${t.name}/${p.partition}`, p.leaderHttp);
    }
  }

  // ------------------------------------------------------------ data path

  /** Append a batch; resolves when committed (RF-replicated, fsynced). Idempotent per (producerId, seq). */
  append(topic: string, partition: number, values: Uint8Array[] | string[], opts: { producerId?: string; seq?: number } = {}): Promise<{ firstOffset: number; lastOffset: number }> {
    const bytes = (values as (Uint8Array | string)[]).map((v) => (typeof v === 'string' ? enc.encode(v) : v));
    const producerId = opts.producerId ?? this.ownProducer;
    const seq = opts.producerId !== undefined && opts.seq !== undefined ? opts.seq : this.ownSeq++;
    const part: QueuedAppend = { framed: encodeFrames(bytes), producerId, seq, resolve: () => undefined, reject: () => undefined };
    if (this.appendsInFlight <= 0) return this.appendOne(topic, partition, part);
    return new Promise((resolve, reject) => {
      part.resolve = resolve;
      part.reject = reject;
      const key = `${topic}/${partition}`;
      const q = this.appendQueues.get(key);
      if (q) q.push(part);
      else this.appendQueues.set(key, [part]);
      this.pumpAppends(topic, partition);
    });
  }

  private pumpAppends(topic: string, partition: number): void {
    const key = `${topic}/${partition}`;
    const q = this.appendQueues.get(key);
    while (q && q.length > 0 && (this.appendRequests.get(key) ?? 0) < this.appendsInFlight) {
      let bytes = 0;
      let n = 0;
      while (n < q.length && n < MAX_COALESCED_APPENDS && (n === 0 || bytes + q[n]!.framed.byteLength + 300 <= MAX_COALESCED_BYTES)) {
        bytes += q[n]!.framed.byteLength + 300;
        n++;
      }
      const parts = q.splice(0, n);
      if (q.length === 0) this.appendQueues.delete(key);
      this.appendRequests.set(key, (this.appendRequests.get(key) ?? 0) + 1);
      void this.sendAppends(topic, partition, parts).finally(() => {
        this.appendRequests.set(key, (this.appendRequests.get(key) ?? 1) - 1);
        this.pumpAppends(topic, partition);
      });
    }
  }

  private async sendAppends(topic: string, partition: number, parts: QueuedAppend[]): Promise<void> {
    try {
      if (parts.length === 1) {
        parts[0]!.resolve(await this.appendOne(topic, partition, parts[0]!));
        return;
      }
      const r = await this.partitionCall(topic, partition, {
        method: 'POST',
        path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/append-many`,
        body: encodeManyAppends(parts),
        contentType: 'application/octet-stream',
      });
      const results = (json(r).results ?? []) as ({ firstOffset: number; lastOffset: number } | { status: number; error: string })[];
      parts.forEach((p, i) => {
        const res = results[i];
        if (!res) p.reject(new BrokerRequestError(502, { error: 'the broker answered fewer results than appends sent' }));
        else if ('error' in res) p.reject(new BrokerRequestError(res.status, { error: res.error }));
        else p.resolve({ firstOffset: Number(res.firstOffset), lastOffset: Number(res.lastOffset) });
      });
    } catch (e) {
      for (const p of parts) p.reject(e as Error);
    }
  }

  private async appendOne(topic: string, partition: number, part: QueuedAppend): Promise<{ firstOffset: number; lastOffset: number }> {
    const r = await this.partitionCall(topic, partition, {
      method: 'POST',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/append`,
      body: part.framed,
      contentType: 'application/octet-stream',
      headers: { 'x-producer-id': part.producerId, 'x-producer-seq': String(part.seq) },
    });
    const b = json(r);
    return { firstOffset: Number(b.firstOffset), lastOffset: Number(b.lastOffset) };
  }

  /** Committed messages from `fromOffset` (inclusive); waits up to waitMs for new ones (long poll). */
  async fetch(topic: string, partition: number, fromOffset: number, opts: { maxMessages?: number; maxBytes?: number; waitMs?: number } = {}): Promise<FetchResult> {
    const q = new URLSearchParams({ from: String(fromOffset) });
    if (opts.maxMessages !== undefined) q.set('max', String(opts.maxMessages));
    if (opts.maxBytes !== undefined) q.set('maxBytes', String(opts.maxBytes));
    if (opts.waitMs !== undefined) q.set('waitMs', String(opts.waitMs));
    const r = await this.partitionCall(topic, partition, {
      method: 'GET',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/messages?${q}`,
      holdMs: opts.waitMs ?? 0,
    });
    const first = Number(r.headers['x-first-offset']);
    const values = decodeFrames(r.bytes);
    return { messages: values.map((value, i) => ({ offset: first + i, value })), highWatermark: Number(r.headers['x-high-watermark']) };
  }

  /** Register a consumer id on one partition (idempotent; used by the managers). */
  async registerConsumer(topic: string, partition: number, consumer: string, from: 'earliest' | 'latest' = 'earliest'): Promise<{ offset: number }> {
    const r = await this.partitionCall(topic, partition, {
      method: 'POST',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/consumers`,
      body: JSON.stringify({ consumer, from }),
      contentType: 'application/json',
    });
    return { offset: Number(json(r).offset) };
  }

  /** The original API's dequeue on one partition: up to `max` messages for this consumer, advancing its replicated offset. */
  async dequeue(topic: string, partition: number, consumer: string, opts: { max?: number; rid?: string } = {}): Promise<DequeueResult> {
    const rid = opts.rid ?? randomUUID();
    const r = await this.partitionCall(topic, partition, {
      method: 'POST',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/dequeue?encoding=frames`,
      body: JSON.stringify({ consumer, max: opts.max ?? 1, rid }),
      contentType: 'application/json',
    });
    const first = Number(r.headers['x-first-offset']);
    return { messages: decodeFrames(r.bytes).map((value, i) => ({ offset: first + i, value })), offset: Number(r.headers['x-consumer-offset']) };
  }

  /** Messages left for this consumer on one partition. */
  async size(topic: string, partition: number, consumer: string): Promise<{ size: number; offset: number; highWatermark: number }> {
    const r = await this.partitionCall(topic, partition, {
      method: 'GET',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/size?consumer=${encodeURIComponent(consumer)}`,
    });
    const b = json(r);
    return { size: Number(b.size), offset: Number(b.offset), highWatermark: Number(b.highWatermark) };
  }

  /** Set a consumer's (or group's) offset on one partition. */
  async commitOffset(topic: string, partition: number, consumer: string, offset: number): Promise<void> {
    await this.partitionCall(topic, partition, {
      method: 'POST',
      path: `/v1/partitions/${encodeURIComponent(topic)}/${partition}/offsets`,
      body: JSON.stringify({ consumer, offset }),
      contentType: 'application/json',
    });
  }

  // ------------------------------------------------------------ routing

  private async info(topic: string, refresh: boolean): Promise<TopicInfo> {
    const cached = this.topics.get(topic);
    if (cached && !refresh) return cached;
    let p = this.refreshing.get(topic);
    if (!p) {
      p = this.topic(topic).finally(() => this.refreshing.delete(topic));
      this.refreshing.set(topic, p);
    }
    return p;
  }

  private async partitionCall(topic: string, partition: number, c: CallOptions): Promise<CallReply> {
    const key = `${topic}/${partition}`;
    const deadline = Date.now() + this.timeoutMs + (c.holdMs ?? 0);
    let attempt = 0;
    let last = 'no attempt made';
    let rotate = 0;
    while (Date.now() < deadline) {
      attempt++;
      let target = this.leaders.get(key);
      if (!target || attempt > 1) {
        const t = await this.info(topic, !target || attempt % 3 === 0).catch((e: unknown) => {
          if (e instanceof BrokerRequestError) throw e;
          last = (e as Error).message;
          return null;
        });
        if (t) {
          const p = t.partitions.find((x) => x.partition === partition);
          if (!p) {
            throw new BrokerRequestError(404, {
              error: `topic "${topic}" has no partition ${partition} (it has ${t.partitions.length}: 0..${t.partitions.length - 1})`,
            });
          }
          target = this.leaders.get(key) ?? p.leaderHttp ?? undefined;
          if (!target || (attempt > 2 && attempt % 2 === 0)) {
            const hosts = p.replicasHttp ?? [];
            if (hosts.length > 0) target = hosts[rotate++ % hosts.length];
          }
        }
      }
      if (!target) {
        await sleep(Math.min(25 * attempt, 250));
        continue;
      }
      let reply: CallReply;
      try {
        reply = await this.send(target, c);
      } catch (e) {
        last = `${target}: ${(e as Error).message}`;
        if (this.leaders.get(key) === target) this.leaders.delete(key);
        await sleep(Math.min(20 * attempt, 200));
        continue;
      }
      if (reply.status < 300) {
        this.leaders.set(key, target);
        return reply;
      }
      const body = safeJson(reply.bytes);
      last = `${target}: ${reply.status} ${String(body.error ?? '')}`;
      if (reply.status === 421) {
        const leaderId = typeof body.leader === 'string' ? body.leader : null;
        const hint = (leaderId ? this.endpointOverride[leaderId] : undefined) ?? (typeof body.leaderHttp === 'string' ? body.leaderHttp : null);
        if (hint && hint !== target) this.leaders.set(key, hint);
        else {
          this.leaders.delete(key);
          await sleep(Math.min(20 * attempt, 200));
        }
        continue;
      }
      if (reply.status === 503 || reply.status === 504) {
        if (this.leaders.get(key) === target && body.reason !== 'dropped') this.leaders.delete(key);
        await sleep(Math.min(20 * attempt, 200));
        continue;
      }
      throw new BrokerRequestError(reply.status, body);
    }
    throw new BrokerUnavailableError(`no leader of ${topic}/${partition} answered ${c.method} within ${this.timeoutMs} ms (last: ${last}); are the brokers up? try: dvote status`);
  }

  private async send(target: string, c: CallOptions): Promise<CallReply> {
    const headers = c.contentType ? { 'content-type': c.contentType, ...(c.headers ?? {}) } : c.headers;
    return httpCall(this.agent, {
      origin: `http://${target}`,
      path: c.path,
      method: c.method,
      ...(headers ? { headers } : {}),
      ...(c.body !== undefined ? { body: c.body } : {}),
      timeoutMs: 5_000 + (c.holdMs ?? 0),
    });
  }
}

const dec = new TextDecoder();

function safeJson(bytes: Uint8Array): Record<string, unknown> {
  try {
    const v = JSON.parse(dec.decode(bytes)) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function json(r: CallReply): Record<string, unknown> {
  return safeJson(r.bytes);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
