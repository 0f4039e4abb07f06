// The broker's HTTP API. Every partition route is served by the partition's
// Raft leader; another replica answers 421 {error, leader, leaderHttp} so the
// client can go there at once, and 503 while no leader is known. Nothing is
// stored on any error: requests are validated completely before anything is
// proposed.
//
//   GET  /health                                   {healthy, state, role, partitions: [PartitionReport]}
//   GET  /metrics                                  Prometheus
//   GET  /v1/partitions                            hosted replicas (PartitionReport[])
//   POST /v1/partitions/:topic/:p/append           batched produce. Body: application/octet-stream,
//        frames (u32 BE length + bytes per message), or JSON {"messages": [string]}.
//        Headers x-producer-id + x-producer-seq (both or neither) make it idempotent.
//        -> 200 {firstOffset, lastOffset, duplicate} after commit (RF replicas, fsynced)
//   POST /v1/partitions/:topic/:p/append-many      several producers' appends in one request (the client
//        coalesces concurrent appends to a partition). Body: octet-stream, repeated
//        u8 producer-id length | producer id | f64 BE seq | u32 BE length | frames.
//        -> 200 {results: [{firstOffset, lastOffset, duplicate} | {status, error}]} in order
//   POST /v1/partitions/:topic/:p/enqueue          the original enqueue: {"message": string, producerId?, seq?} -> {offset}
//   GET  /v1/partitions/:topic/:p/messages?from=&max=&maxBytes=&waitMs=
//        committed messages from `from` (long poll up to waitMs, max 30 s): frames body,
//        headers x-first-offset, x-count, x-high-watermark (JSON {messages:[{offset, message}]} with ?encoding=json)
//   POST /v1/partitions/:topic/:p/consumers        {consumer, from?: earliest|latest} -> {consumer, offset}
//   POST /v1/partitions/:topic/:p/dequeue          {consumer, max?, rid?} -> {messages: [{offset, message}], offset}
//        (?encoding=frames: frames body, headers x-first-offset, x-count, x-consumer-offset)
//   GET  /v1/partitions/:topic/:p/size?consumer=   {size, offset, highWatermark}
//   POST /v1/partitions/:topic/:p/offsets          {consumer, offset} -> {offset} (consumer groups commit here)
//   POST /v1/partitions/:topic/:p/transfer         {to} leadership transfer (operators, tests)
//
// Errors: 400 malformed input, 404 unknown topic / partition / consumer,
// 409 a producer sequence too old to deduplicate, 413 a message above 1 MiB,
// a batch above 4 MiB or 10,000 messages, 421 not the leader, 503 no leader
// yet (retry), 504 the write's outcome is unknown (retry with the same
// producer id and sequence).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NotLeaderError, ProposalDroppedError } from '../../raft/core/types.js';
import { GroupStoppedError, ProposalLostError, ProposalTimeoutError } from '../../raft/host/raft-group.js';
import type { BrokerNode } from './broker-node.js';
import { decodeFrames, encodeFrames, FrameError } from './message-frames.js';
import { encodeAppend, encodeAppendFramed, encodeControl, type ControlCommand, type ControlResult, type PartitionResult } from './partition-state-machine.js';
import type { PartitionReplica } from './partition-replica.js';
import { CLIENT_ID, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES } from './placement-records.js';

export class BrokerHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const MAX_WAIT_MS = 30_000;

export function registerBrokerRoutes(node: BrokerNode): void {
  const app = node.app;
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: unknown, _req, reply) => replyError(node, err, reply));
  app.addHook('onResponse', (req, reply, done) => {
    node.metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
    done();
  });

  app.get('/health', async (_req, reply) => {
    const h = node.health();
    return reply.code(h.healthy ? 200 : 503).send(h);
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', node.metrics.registry.contentType);
    return node.metrics.registry.metrics();
  });
  app.get('/v1/partitions', async () => ({ id: node.id, partitions: node.replicas().map((p) => p.report()) }));

  app.post('/v1/partitions/:topic/:p/append', async (req, reply) => {
    const r = await leaderReplica(node, req);
    const producer = producerOf(req.headers['x-producer-id'], req.headers['x-producer-seq']);
    let command: Uint8Array;
    let count: number;
    let bytes: number;
    if (Buffer.isBuffer(req.body)) {
      const framed = req.body as Buffer;
      if (framed.byteLength > MAX_BATCH_BYTES) throw new BrokerHttpError(413, `batch is ${framed.byteLength} bytes; the limit is ${MAX_BATCH_BYTES}`);
      const values = framesOf(framed);
      count = values.length;
      bytes = framed.byteLength;
      command = encodeAppendFramed(framed, producer);
    } else {
      const b = jsonBody(req);
      if (!Array.isArray(b.messages) || !b.messages.every((m) => typeof m === 'string')) {
        throw new BrokerHttpError(400, 'body must be frames (application/octet-stream) or JSON {"messages": [string, ...]}');
      }
      const values = (b.messages as string[]).map((m) => enc.encode(m));
      checkBatch(values);
      count = values.length;
      bytes = values.reduce((n, v) => n + v.byteLength, 0);
      command = encodeAppend(values, producer);
    }
    if (count === 0) throw new BrokerHttpError(400, 'the batch holds no message');
    const t0 = performance.now();
    const res = await r.append(command);
    if (!res.ok) throw new BrokerHttpError(res.status, res.error);
    {
      if (!res.duplicate) {
        node.metrics.appendedMessages.inc(count);
        node.metrics.appendedBytes.inc(bytes);
      }
      node.metrics.appendSeconds.observe((performance.now() - t0) / 1000);
      return reply.send({ firstOffset: res.firstOffset, lastOffset: res.lastOffset, duplicate: res.duplicate });
    }
  });

  // Several producers' appends in one request (the client coalesces concurrent
  // appends to one partition); each is validated, deduplicated and answered
  // on its own, and they share one Raft entry.
  app.post('/v1/partitions/:topic/:p/append-many', async (req, reply) => {
    const r = await leaderReplica(node, req);
    if (!Buffer.isBuffer(req.body)) throw new BrokerHttpError(400, 'body must be application/octet-stream (see append-many in broker-routes.ts)');
    const body = req.body as Buffer;
    if (body.byteLength > MAX_BATCH_BYTES) throw new BrokerHttpError(413, `request is ${body.byteLength} bytes; the limit is ${MAX_BATCH_BYTES}`);
    let parts: ManyPart[];
    try {
      parts = decodeMany(body);
    } catch (e) {
      throw new BrokerHttpError(400, `bad append-many body: ${(e as Error).message}`);
    }
    if (parts.length === 0) throw new BrokerHttpError(400, 'the request holds no append');
    const results: ({ firstOffset: number; lastOffset: number; duplicate: boolean } | { status: number; error: string })[] = new Array(parts.length);
    const pending: Promise<void>[] = [];
    let failure: unknown = null;
    const t0 = performance.now();
    parts.forEach((part, i) => {
      let command: Uint8Array;
      let count: number;
      try {
        const producer = producerOf(part.producerId, String(part.seq));
        count = framesOf(part.framed).length;
        if (count === 0) throw new BrokerHttpError(400, 'the batch holds no message');
        command = encodeAppendFramed(part.framed, producer);
      } catch (e) {
        const he = e instanceof BrokerHttpError ? e : new BrokerHttpError(400, (e as Error).message);
        results[i] = { status: he.status, error: he.message };
        return;
      }
      pending.push(
        r.append(command).then(
          (res) => {
            if (!res.ok) results[i] = { status: res.status, error: res.error };
            else {
              results[i] = { firstOffset: res.firstOffset, lastOffset: res.lastOffset, duplicate: res.duplicate };
              if (!res.duplicate) {
                node.metrics.appendedMessages.inc(count);
                node.metrics.appendedBytes.inc(part.framed.byteLength);
              }
            }
          },
          (e: unknown) => {
            failure ??= e;
          },
        ),
      );
    });
    await Promise.all(pending);
    // A group-level failure (not the leader, dropped, timeout) is the same for all: the client retries the request.
    if (failure) throw failure;
    node.metrics.appendSeconds.observe((performance.now() - t0) / 1000);
    return reply.send({ results });
  });

  app.post('/v1/partitions/:topic/:p/enqueue', async (req) => {
    const r = await leaderReplica(node, req);
    const b = jsonBody(req);
    if (typeof b.message !== 'string') throw new BrokerHttpError(400, 'body must be {"message": string, "producerId"?: string, "seq"?: int}');
    const producer = producerOf(b.producerId, b.seq === undefined ? undefined : String(b.seq));
    const value = enc.encode(b.message);
    checkBatch([value]);
    const res = await r.append(encodeAppend([value], producer));
    if (!res.ok) throw new BrokerHttpError(res.status, res.error);
    if (!res.duplicate) node.metrics.appendedMessages.inc(1);
    return { offset: res.firstOffset, duplicate: res.duplicate };
  });

  app.get('/v1/partitions/:topic/:p/messages', async (req, reply) => {
    const r = await leaderReplica(node, req);
    const q = req.query as Record<string, string | undefined>;
    const from = intParam(q.from, 'from', 0, Number.MAX_SAFE_INTEGER, undefined);
    const max = intParam(q.max, 'max', 1, MAX_BATCH_MESSAGES, 1000);
    const maxBytes = intParam(q.maxBytes, 'maxBytes', 1, MAX_BATCH_BYTES, 1024 * 1024);
    const waitMs = intParam(q.waitMs, 'waitMs', 0, MAX_WAIT_MS, 0);
    await r.waitFor(from, waitMs);
    // Leadership may have moved while we waited: a follower must not answer.
    if (!r.group.isLeader) throw notLeader(node, r);
    const values = r.sm.read(from, max, maxBytes);
    node.metrics.fetchedMessages.inc(values.length);
    reply.header('x-first-offset', String(from)).header('x-count', String(values.length)).header('x-high-watermark', String(r.highWatermark));
    if (q.encoding === 'json') return reply.send({ messages: values.map((v, i) => ({ offset: from + i, message: dec.decode(v) })), highWatermark: r.highWatermark });
    return reply.header('content-type', 'application/octet-stream').send(Buffer.from(encodeFrames(values)));
  });

  app.post('/v1/partitions/:topic/:p/consumers', async (req) => {
    const r = await leaderReplica(node, req);
    const b = jsonBody(req);
    const consumer = consumerOf(b.consumer);
    const from = b.from === undefined ? 'earliest' : b.from;
    if (from !== 'earliest' && from !== 'latest') throw new BrokerHttpError(400, '"from" must be "earliest" or "latest"');
    const res = await control(r, { c: 'register', consumer, from });
    if (res.c !== 'register') throw new Error('unexpected partition result');
    return { consumer, offset: res.offset, created: res.created };
  });

  app.post('/v1/partitions/:topic/:p/dequeue', async (req, reply) => {
    const r = await leaderReplica(node, req);
    const b = jsonBody(req);
    const consumer = consumerOf(b.consumer);
    const max = b.max === undefined ? 1 : b.max;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > MAX_BATCH_MESSAGES) {
      throw new BrokerHttpError(400, `"max" must be an integer in [1, ${MAX_BATCH_MESSAGES}]`);
    }
    if (b.rid !== undefined && (typeof b.rid !== 'string' || b.rid.length === 0 || b.rid.length > 128)) {
      throw new BrokerHttpError(400, '"rid" must be a string of 1-128 characters');
    }
    if (r.sm.consumerOffset(consumer) === undefined) throw unknownConsumer(consumer, r);
    const res = await control(r, { c: 'dequeue', consumer, max, ...(typeof b.rid === 'string' ? { rid: b.rid } : {}) });
    if (res.c !== 'dequeue') throw new Error('unexpected partition result');
    const values = r.sm.read(res.from, res.count);
    node.metrics.fetchedMessages.inc(values.length);
    if ((req.query as Record<string, string>).encoding === 'frames') {
      reply.header('x-first-offset', String(res.from)).header('x-count', String(values.length)).header('x-consumer-offset', String(res.offset));
      return reply.header('content-type', 'application/octet-stream').send(Buffer.from(encodeFrames(values)));
    }
    return reply.send({ messages: values.map((v, i) => ({ offset: res.from + i, message: dec.decode(v) })), offset: res.offset });
  });

  app.get('/v1/partitions/:topic/:p/size', async (req) => {
    const r = await leaderReplica(node, req);
    const consumer = consumerOf((req.query as Record<string, unknown>).consumer);
    // Linearizable: the leader confirms it still leads and has applied everything committed.
    await r.group.readBarrier().catch((e: unknown) => {
      throw translate(node, r, e);
    });
    const offset = r.sm.consumerOffset(consumer);
    if (offset === undefined) throw unknownConsumer(consumer, r);
    return { consumer, size: r.highWatermark - offset, offset, highWatermark: r.highWatermark };
  });

  app.post('/v1/partitions/:topic/:p/offsets', async (req) => {
    const r = await leaderReplica(node, req);
    const b = jsonBody(req);
    const consumer = consumerOf(b.consumer);
    if (typeof b.offset !== 'number' || !Number.isInteger(b.offset) || b.offset < 0) throw new BrokerHttpError(400, '"offset" must be a non-negative integer');
    if (r.sm.consumerOffset(consumer) === undefined) throw unknownConsumer(consumer, r);
    const res = await control(r, { c: 'commit', consumer, offset: b.offset });
    if (res.c !== 'commit') throw new Error('unexpected partition result');
    return { consumer, offset: res.offset };
  });

  app.post('/v1/partitions/:topic/:p/transfer', async (req) => {
    const r = await leaderReplica(node, req);
    const b = jsonBody(req);
    if (typeof b.to !== 'string') throw new BrokerHttpError(400, 'body must be {"to": "<broker id>"}');
    try {
      r.group.transferLeadership(b.to);
    } catch (e) {
      throw translate(node, r, e);
    }
    return { transferring: true, from: node.id, to: b.to };
  });
}

interface ManyPart {
  producerId: string;
  seq: number;
  framed: Uint8Array;
}

/** append-many body: repeated u8 producer id length | producer id | f64 seq | u32 length | framed batch. */
function decodeMany(buf: Uint8Array): ManyPart[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ManyPart[] = [];
  let pos = 0;
  while (pos < buf.byteLength) {
    if (pos + 1 > buf.byteLength) throw new Error(`truncated at byte ${pos}`);
    const pidLen = buf[pos]!;
    if (pos + 1 + pidLen + 8 + 4 > buf.byteLength) throw new Error(`truncated part ${out.length} at byte ${pos}`);
    const producerId = dec.decode(buf.subarray(pos + 1, pos + 1 + pidLen));
    const seq = view.getFloat64(pos + 1 + pidLen);
    const len = view.getUint32(pos + 1 + pidLen + 8);
    const start = pos + 1 + pidLen + 12;
    if (start + len > buf.byteLength) throw new Error(`part ${out.length} claims ${len} bytes but only ${buf.byteLength - start} follow`);
    out.push({ producerId, seq, framed: buf.subarray(start, start + len) });
    pos = start + len;
    if (out.length > MAX_BATCH_MESSAGES) throw new Error(`more than ${MAX_BATCH_MESSAGES} appends in one request`);
  }
  return out;
}

function jsonBody(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  if (!b || typeof b !== 'object' || Array.isArray(b) || Buffer.isBuffer(b)) throw new BrokerHttpError(400, 'body must be a JSON object');
  return b as Record<string, unknown>;
}

function intParam(v: string | undefined, name: string, min: number, max: number, dflt: number | undefined): number {
  if (v === undefined || v === '') {
    if (dflt === undefined) throw new BrokerHttpError(400, `missing query parameter "${name}"`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new BrokerHttpError(400, `"${name}" must be an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

function consumerOf(v: unknown): string {
  if (typeof v !== 'string' || !CLIENT_ID.test(v)) throw new BrokerHttpError(400, '"consumer" must be a consumer id (letters, digits, ".", "_", ":" or "-", at most 128)');
  return v;
}

function producerOf(id: unknown, seq: unknown): { id: string; seq: number } | undefined {
  if (id === undefined && seq === undefined) return undefined;
  if (typeof id !== 'string' || !CLIENT_ID.test(id)) throw new BrokerHttpError(400, 'producer id must be letters, digits, ".", "_", ":" or "-" (at most 128)');
  const n = Number(seq);
  if (typeof seq !== 'string' || seq === '' || !Number.isSafeInteger(n) || n < 0) throw new BrokerHttpError(400, 'producer sequence must be a non-negative integer (x-producer-seq)');
  return { id, seq: n };
}

function framesOf(buf: Uint8Array): Uint8Array[] {
  try {
    return decodeFrames(buf, { maxValueBytes: MAX_MESSAGE_BYTES, maxCount: MAX_BATCH_MESSAGES });
  } catch (e) {
    if (e instanceof FrameError) throw new BrokerHttpError(e.kind === 'too large' ? 413 : 400, `bad batch: ${e.message}`);
    throw e;
  }
}

function checkBatch(values: Uint8Array[]): void {
  if (values.length > MAX_BATCH_MESSAGES) throw new BrokerHttpError(413, `${values.length} messages in one batch; the limit is ${MAX_BATCH_MESSAGES}`);
  let total = 0;
  values.forEach((v, i) => {
    if (v.byteLength > MAX_MESSAGE_BYTES) throw new BrokerHttpError(413, `message ${i} is ${v.byteLength} bytes; the limit is ${MAX_MESSAGE_BYTES}`);
    total += v.byteLength + 4;
  });
  if (total > MAX_BATCH_BYTES) throw new BrokerHttpError(413, `batch is ${total} bytes; the limit is ${MAX_BATCH_BYTES}`);
}

function unknownConsumer(consumer: string, r: PartitionReplica): BrokerHttpError {
  return new BrokerHttpError(404, `unknown consumer "${consumer}" on ${r.topic}/${r.partition}: register it first (POST /v1/topics/${r.topic}/consumers on a manager)`, {
    reason: 'unknown consumer',
  });
}

/** The partition's replica on this broker, if this broker leads it; otherwise the right error. */
async function leaderReplica(node: BrokerNode, req: FastifyRequest): Promise<PartitionReplica> {
  const { topic, p } = req.params as { topic: string; p: string };
  if (!/^\d{1,4}$/.test(p)) throw new BrokerHttpError(400, `partition must be a non-negative integer, got "${p}"`);
  const partition = Number(p);
  let r = node.replica(topic, partition);
  if (!r) {
    let t = node.topicRecord(topic);
    if (!t || !t.partitions.some((x) => x.partition === partition)) {
      await node.refreshPlacement();
      t = node.topicRecord(topic);
      r = node.replica(topic, partition);
    }
    if (!r) {
      if (!t) throw new BrokerHttpError(404, `unknown topic "${topic}": create it first (POST /v1/topics on a manager)`, { reason: 'unknown topic' });
      const rec = t.partitions.find((x) => x.partition === partition);
      if (!rec) {
        throw new BrokerHttpError(404, `topic "${topic}" has no partition ${partition} (it has ${t.partitions.length}: 0..${t.partitions.length - 1})`, {
          reason: 'unknown partition',
        });
      }
      if (rec.replicas.includes(node.id)) throw new BrokerHttpError(503, `the replica of ${topic}/${partition} on ${node.id} is starting; retry`, { reason: 'starting' });
      const hint = rec.replicas[0] ?? null;
      throw new BrokerHttpError(421, `${node.id} holds no replica of ${topic}/${partition}; ask its replicas ${rec.replicas.join(', ')}`, {
        leader: null,
        replicas: rec.replicas,
        leaderHttp: null,
        hintHttp: node.brokerHttp(hint),
      });
    }
  }
  if (!r.group.isLeader) throw notLeader(node, r);
  return r;
}

function notLeader(node: BrokerNode, r: PartitionReplica): BrokerHttpError {
  const leader = r.group.leader;
  if (!leader || leader === node.id) return new BrokerHttpError(503, `${r.topic}/${r.partition} has no leader right now (election in progress); retry shortly`, { reason: 'no leader' });
  return new BrokerHttpError(421, `${node.id} is not the leader of ${r.topic}/${r.partition}; the leader is ${leader}`, {
    leader,
    leaderHttp: node.brokerHttp(leader),
  });
}

/** Errors (not leader, dropped, timeout) reach the error handler, which maps them to 421/503/504. */
function propose(r: PartitionReplica, command: Uint8Array): Promise<PartitionResult> {
  return r.group.propose(command);
}

async function control(r: PartitionReplica, cmd: ControlCommand): Promise<Exclude<ControlResult, { ok: false }>> {
  const res = (await propose(r, encodeControl(cmd))) as ControlResult;
  if (!res.ok) throw new BrokerHttpError(res.status, res.error);
  return res;
}

function translate(node: BrokerNode, r: PartitionReplica | null, e: unknown): Error {
  if (e instanceof BrokerHttpError) return e;
  if (e instanceof NotLeaderError) {
    if (!e.leader || (r && e.leader === node.id)) return new BrokerHttpError(503, 'no leader right now; retry shortly', { reason: 'no leader' });
    return new BrokerHttpError(421, `not the leader; the leader is ${e.leader}`, { leader: e.leader, leaderHttp: node.brokerHttp(e.leader) });
  }
  if (e instanceof ProposalDroppedError) return new BrokerHttpError(503, `${e.message}; retry`, { reason: 'dropped' });
  if (e instanceof ProposalLostError) return new BrokerHttpError(503, `${e.message}; retry`, { reason: 'lost' });
  if (e instanceof ProposalTimeoutError) return new BrokerHttpError(504, e.message, { reason: 'timeout', unknownOutcome: true });
  if (e instanceof GroupStoppedError) return new BrokerHttpError(503, `${e.message}; retry`, { reason: 'stopping' });
  return e as Error;
}

function replyError(node: BrokerNode, err: unknown, reply: FastifyReply): FastifyReply {
  const e = translate(node, null, err);
  if (e instanceof BrokerHttpError) return reply.code(e.status).send({ error: e.message, ...e.extra });
  const fe = err as { statusCode?: number; message?: string; code?: string };
  if (fe.statusCode === 413 || fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return reply.code(413).send({ error: `request body too large: a batch may hold at most ${MAX_BATCH_BYTES} bytes` });
  }
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return reply.code(fe.statusCode).send({ error: fe.message ?? 'bad request' });
  node.log.error({ err: String(err), stack: (err as Error).stack }, 'request failed');
  return reply.code(500).send({ error: `internal error: ${(err as Error).message}` });
}
