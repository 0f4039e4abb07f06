// The manager node: one member of the Raft manager group (the control plane).
// Leader = write manager; followers serve reads (linearizable through
// ReadIndex, or stale on request) and forward writes to the leader.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { request as httpRequest } from 'undici';
import { NotLeaderError, ProposalDroppedError } from '../../raft/core/types.js';
import { RaftHost } from '../../raft/host/raft-host.js';
import {
  GroupStoppedError,
  ProposalLostError,
  ProposalTimeoutError,
  ReadTimeoutError,
  type RaftGroup,
} from '../../raft/host/raft-group.js';
import { encodeKvCommand, type KvCommand, type KvResult } from '../../raft/kv/kv-state-machine.js';
import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { ManagerMetrics } from './manager-metrics.js';
import { KEYS, ManagerState, type MemberRecord } from './manager-state.js';
import { registerClusterRoutes } from './cluster-routes.js';
import { registerShardRoutes } from './shard-routes.js';
import { LivenessService } from './liveness.js';
import { PlacementService } from './placement-service.js';
import { registerTopicRoutes } from './topic-routes.js';

export const MANAGER_GROUP = 'managers';
/** Largest value accepted in the KV API. */
export const MAX_VALUE_BYTES = 256 * 1024;
export const MAX_KEY_BYTES = 512;
const FORWARDED = 'x-dvote-forwarded';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export class ManagerNode {
  readonly host: RaftHost;
  readonly state = new ManagerState();
  group!: RaftGroup<KvResult>;
  readonly app: FastifyInstance;
  readonly metrics: ManagerMetrics;
  private readonly memberHttp = new Map<string, string>();
  readonly startedAt = Date.now();
  readonly liveness: LivenessService;
  readonly placement: PlacementService;

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    const peers: Record<string, string> = {};
    for (const m of config.managers) {
      peers[m.id] = m.raft;
      this.memberHttp.set(m.id, m.http);
    }
    this.host = new RaftHost({
      nodeId: config.id,
      listen: { host: config.listen.host, port: config.listen.raftPort ?? 0 },
      peers,
      logger: log,
    });
    this.app = Fastify({ logger: false, bodyLimit: MAX_VALUE_BYTES + 64 * 1024 });
    this.metrics = new ManagerMetrics(this);
    this.liveness = new LivenessService(this);
    this.placement = new PlacementService(this);
  }

  async start(): Promise<void> {
    await this.host.start();
    const bootstrapVoters = this.config.bootstrap ? this.config.managers.map((m) => m.id) : undefined;
    this.group = this.host.addGroup<KvResult>({
      group: MANAGER_GROUP,
      dir: join(this.config.dataDir, 'raft'),
      stateMachine: this.state,
      ...(bootstrapVoters
        ? {
            bootstrap: {
              voters: bootstrapVoters,
              addresses: Object.fromEntries(this.config.managers.map((m) => [m.id, m.raft])),
            },
          }
        : {}),
      ...(this.config.timing ? { timing: this.config.timing } : {}),
      onLeaderChange: (leader, term) => {
        this.log.info({ leader, term }, 'manager leader changed');
        this.liveness.onLeaderChange(leader);
        this.placement.onLeaderChange(leader);
      },
    });
    this.registerRoutes();
    await this.app.listen({ host: this.config.listen.host, port: this.config.listen.httpPort });
  }

  async stop(): Promise<void> {
    this.liveness.stop();
    this.placement.stop();
    await this.app.close();
    await this.host.stop();
  }

  get httpPort(): number {
    const a = this.app.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** HTTP base address of a manager, from the configuration or the replicated member records. */
  memberAddress(id: string): string | undefined {
    const rec = this.state.getJson<MemberRecord>(KEYS.member(id));
    return rec?.http ?? this.memberHttp.get(id);
  }

  // ------------------------------------------------------------------ writes

  /** Commit a KV command through Raft on the leader; followers forward to it. */
  async write(cmd: KvCommand, req: FastifyRequest): Promise<KvResult> {
    if (this.group.isLeader) return this.proposeLocal(cmd);
    throw await this.forwardToLeader(req);
  }

  async proposeLocal(cmd: KvCommand): Promise<KvResult> {
    try {
      return await this.group.propose(encodeKvCommand(cmd));
    } catch (e) {
      throw this.translate(e);
    }
  }

  /** Forward the request to the leader and return its reply as an HttpError carrying the body (thrown by the caller). */
  async forwardToLeader(req: FastifyRequest): Promise<Error> {
    if (req.headers[FORWARDED]) {
      return new HttpError(503, 'no leader: the request was forwarded to a node that is not the leader; retry shortly', {
        reason: 'leader changed',
      });
    }
    const leader = this.group.leader;
    if (!leader) return new HttpError(503, 'no leader: an election is in progress; retry shortly', { reason: 'no leader' });
    const addr = this.memberAddress(leader);
    if (!addr) return new HttpError(503, `leader ${leader} has no known address; retry shortly`, { reason: 'unknown leader' });
    this.metrics.forwarded.inc();
    try {
      const res = await httpRequest(`http://${addr}${req.url}`, {
        method: req.method as 'PUT',
        headers: {
          ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}),
          [FORWARDED]: this.config.id,
          ...(req.headers['idempotency-key'] ? { 'idempotency-key': String(req.headers['idempotency-key']) } : {}),
        },
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        headersTimeout: 15_000,
        bodyTimeout: 15_000,
      });
      const text = await res.body.text();
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      return new ForwardedReply(res.statusCode, body);
    } catch (e) {
      return new HttpError(503, `could not reach leader ${leader} at ${addr}: ${(e as Error).message}; retry`, {
        reason: 'leader unreachable',
      });
    }
  }

  /** A linearizable read barrier (unless stale reads are allowed). */
  async readBarrier(): Promise<void> {
    try {
      await this.group.readBarrier();
    } catch (e) {
      throw this.translate(e);
    }
  }

  translate(e: unknown): Error {
    if (e instanceof HttpError) return e;
    if (e instanceof NotLeaderError) {
      return new HttpError(503, e.leader ? `not the leader (leader is ${e.leader}); retry` : 'no leader; retry shortly', {
        reason: e.leader ? 'not leader' : 'no leader',
        leader: e.leader,
        ...(e.leader ? { leaderHttp: this.memberAddress(e.leader) ?? null } : {}),
      });
    }
    if (e instanceof ProposalDroppedError) return new HttpError(503, `${e.message}; retry`, { reason: 'dropped' });
    if (e instanceof ProposalLostError) return new HttpError(503, `${e.message}; retry`, { reason: 'lost' });
    if (e instanceof ProposalTimeoutError) return new HttpError(504, e.message, { reason: 'timeout', unknownOutcome: true });
    if (e instanceof ReadTimeoutError) return new HttpError(503, e.message, { reason: 'read timeout' });
    if (e instanceof GroupStoppedError) return new HttpError(503, e.message, { reason: 'stopping' });
    return e as Error;
  }

  // ------------------------------------------------------------------ routes

  private registerRoutes(): void {
    const app = this.app;
    app.setErrorHandler((err: unknown, _req, reply) => this.replyError(err, reply));
    app.addHook('onResponse', (req, reply, done) => {
      this.metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
      done();
    });

    app.get('/health', async (_req, reply) => {
      const h = this.health();
      return reply.code(h.healthy ? 200 : 503).send(h);
    });
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get('/v1/status', async () => ({ ...this.group.status(), transport: this.host.transportStats() }));

    // Keys may contain slashes, hence the wildcard.
    app.get('/v1/kv/*', async (req, reply) => {
      const key = this.keyOf(req);
      const stale = (req.query as Record<string, string>).stale === 'true';
      if (!stale) await this.readBarrier();
      const e = this.state.kv.get(key);
      const meta = { linearizable: !stale, servedBy: this.config.id };
      if (!e) return reply.code(404).send({ error: `key not found: ${key}`, key, ...meta });
      return { key, value: e.value, revision: e.modRevision, version: e.version, ...meta };
    });

    app.get('/v1/kv', async (req) => {
      const q = req.query as Record<string, string>;
      const prefix = q.prefix ?? '';
      const stale = q.stale === 'true';
      if (!stale) await this.readBarrier();
      const items = this.state.kv.range(prefix).map(([key, e]) => ({ key, value: e.value, revision: e.modRevision }));
      return { prefix, items, revision: this.state.kv.currentRevision, linearizable: !stale, servedBy: this.config.id };
    });

    app.put('/v1/kv/*', async (req, reply) => {
      const key = this.keyOf(req);
      const value = this.valueOf(req.body, 'value');
      if (value === null) throw new HttpError(400, 'value must not be null: to remove a key use DELETE /v1/kv/<key>');
      const r = await this.runWrite({ op: 'put', key, value, ...this.rid(req) }, req);
      if (r.op !== 'put') throw new Error('unexpected result');
      return reply.send({ key, revision: r.revision });
    });

    app.delete('/v1/kv/*', async (req) => {
      const key = this.keyOf(req);
      const r = await this.runWrite({ op: 'delete', key, ...this.rid(req) }, req);
      if (r.op !== 'delete') throw new Error('unexpected result');
      return { key, revision: r.revision, deleted: r.deleted };
    });

    app.post('/v1/cas/*', async (req, reply) => this.handleCas(req, reply));

    app.post('/v1/txn', async (req) => {
      const body = req.body as Record<string, unknown> | undefined;
      if (!body || typeof body !== 'object') throw new HttpError(400, 'body must be a JSON object {compare, success, failure?, read?}');
      const cmd = parseTxn(body);
      const r = await this.runWrite({ ...cmd, ...this.rid(req) }, req);
      return r;
    });

    registerClusterRoutes(this);
    registerShardRoutes(this);
    registerTopicRoutes(this);
  }

  private async handleCas(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const key = this.keyOf(req);
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || !('expected' in body)) {
      throw new HttpError(400, 'body must be {"expected": <string|null>, "value": <string>} (expected null means "absent")');
    }
    const expected = this.valueOf(body, 'expected');
    const value = this.valueOf(body, 'value');
    const r = await this.runWrite({ op: 'cas', key, expected, value, ...this.rid(req) }, req);
    if (r.op !== 'cas') throw new Error('unexpected result');
    if (!r.ok) return reply.code(409).send({ ok: false, key, current: r.current, revision: r.revision });
    return reply.send({ ok: true, key, revision: r.revision });
  }

  /** Run a write here (leader) or forward it; a forwarded reply is passed through as is. */
  private async runWrite(cmd: KvCommand, req: FastifyRequest): Promise<KvResult> {
    const start = performance.now();
    try {
      return await this.write(cmd, req);
    } finally {
      this.metrics.writeSeconds.observe((performance.now() - start) / 1000);
    }
  }

  private rid(req: FastifyRequest): { rid?: string } {
    const k = req.headers['idempotency-key'];
    if (typeof k === 'string' && k.length > 0) {
      if (k.length > 128) throw new HttpError(400, 'idempotency-key is longer than 128 characters');
      return { rid: k };
    }
    return {};
  }

  private keyOf(req: FastifyRequest): string {
    const raw = (req.params as Record<string, string>)['*'] ?? '';
    const key = raw.startsWith('/') ? raw : `/${raw}`;
    if (raw === '') throw new HttpError(400, 'missing key: use /v1/kv/<key>');
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new HttpError(400, `key is longer than ${MAX_KEY_BYTES} bytes`);
    return raw;
  }

  private valueOf(body: unknown, field: string): string | null {
    if (!body || typeof body !== 'object' || !(field in body)) {
      throw new HttpError(400, `body must be a JSON object with "${field}"`);
    }
    const v = (body as Record<string, unknown>)[field];
    if (v === null) return null;
    if (typeof v !== 'string') throw new HttpError(400, `"${field}" must be a string (encode other data as JSON text)`);
    if (Buffer.byteLength(v) > MAX_VALUE_BYTES) throw new HttpError(413, `"${field}" is larger than ${MAX_VALUE_BYTES} bytes`);
    return v;
  }

  replyError(err: unknown, reply: FastifyReply): FastifyReply {
    if (err instanceof ForwardedReply) return reply.code(err.status).send(err.body);
    const e = this.translate(err);
    if (e instanceof HttpError) return reply.code(e.status).send({ error: e.message, ...e.extra });
    const fe = err as { statusCode?: number; message?: string };
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.code(fe.statusCode).send({ error: fe.message ?? 'bad request' });
    }
    this.log.error({ err: String(err), stack: (err as Error).stack }, 'request failed');
    return reply.code(500).send({ error: `internal error: ${(err as Error).message}` });
  }

  health(): Record<string, unknown> & { healthy: boolean } {
    const s = this.group.status();
    return {
      healthy: s.leader !== null,
      id: this.config.id,
      role: 'manager',
      state: s.role,
      leader: s.leader,
      term: s.term,
      commitIndex: s.commit,
      appliedIndex: s.applied,
      voters: s.conf.voters,
      learners: s.conf.learners,
      uptimeMs: Date.now() - this.startedAt,
    };
  }

  newRequestId(): string {
    return randomUUID();
  }
}

/** A reply obtained from the leader, passed back to the client unchanged. */
export class ForwardedReply extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(`forwarded reply ${status}`);
  }
}

function parseTxn(body: Record<string, unknown>): KvCommand {
  const compare = body.compare ?? [];
  const success = body.success ?? [];
  const failure = body.failure ?? [];
  const read = body.read ?? [];
  if (!Array.isArray(compare) || !Array.isArray(success) || !Array.isArray(failure) || !Array.isArray(read)) {
    throw new HttpError(400, 'txn: compare, success, failure and read must be arrays');
  }
  for (const c of compare) {
    if (!c || typeof c.key !== 'string' || !(typeof c.value === 'string' || c.value === null)) {
      throw new HttpError(400, 'txn: each compare is {"key": string, "value": string|null}');
    }
  }
  for (const w of [...success, ...failure]) {
    const ok =
      w &&
      typeof w.key === 'string' &&
      ((w.op === 'put' && typeof w.value === 'string') || w.op === 'delete');
    if (!ok) throw new HttpError(400, 'txn: each write is {"op":"put","key":..,"value":..} or {"op":"delete","key":..}');
  }
  if (!read.every((k) => typeof k === 'string')) throw new HttpError(400, 'txn: read is a list of keys');
  return { op: 'txn', compare, success, failure, read } as KvCommand;
}
