// The vote API of a shard service.
//
//   POST /votes        {voterId, choice}
//     201 {voterId, choice, choiceIndex, shard, epoch, castAt}           stored
//     409 {error: "already voted", voterId, choice, choiceIndex, ...}    the first vote stands (choice = first)
//     400 {error, problems: [...]}   bad JSON, bad voter id, unknown choice (nothing stored)
//     413 {error}                    body over 4 KiB
//     421 {error, shard}             the voter belongs to another shard (ask the shard map)
//     503 {error, reason} + Retry-After   not stored: the service is starting, overloaded
//                                         (queue full) or its primary is unreachable; retry
//   POST /votes/batch  {votes: [{voterId, choice}, ...]}  (1..1000 votes, body up to 256 KiB)
//     200 {shard, epoch, accepted, duplicates, rejected, failed, results: [one per vote, in order:
//          {voterId, status: 201|409|400|421|503, choice?, choiceIndex?, castAt?, error?}]}
//     400 / 413 / 503 for the request as a whole (not a list, too many votes, no room)
//   GET  /votes/:voterId   200 {voterId, choice, choiceIndex, castAt, shard} | 404 | 400 | 421
//   GET  /tally            {shard, epoch, primary, ballot, counts: {name: n}, total}
//   GET  /health, GET /metrics
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { checkVote, choiceName, parseVoterIdText, type ValidVote } from '../../core/vote-validation.js';
import { QueueFullError, type VoteOutcome } from './vote-batcher.js';
import type { ShardNode, ShardView } from './shard-node.js';
import { FencedError } from './vote-store.js';
import { NoPrimaryError } from './primary-connection.js';
import { NotReadyError } from './replication-path.js';
import { ReplicaWaitError } from './log-path.js';
import { DetachedError, LogUnavailableError } from './vote-log.js';

export const MAX_VOTE_BODY_BYTES = 4 * 1024;
export const MAX_BATCH_BODY_BYTES = 256 * 1024;
export const MAX_BATCH_VOTES = 1000;
const RETRY_AFTER_S = '1';

type VoteAnswer = { status: number; body: Record<string, unknown> };

export function registerVoteRoutes(node: ShardNode): void {
  const app = node.app;
  // Votes are JSON only: a text/plain body is refused (415) instead of parsed as a string.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const status = err.statusCode ?? 500;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: `request body is too large (a vote takes at most ${MAX_VOTE_BODY_BYTES} bytes, a batch ${MAX_BATCH_BODY_BYTES} bytes and ${MAX_BATCH_VOTES} votes); nothing was stored` });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send({ error: 'send the vote as JSON with content-type: application/json; nothing was stored' });
    }
    if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      return reply.code(400).send({ error: 'request body is empty: send {"voterId": <whole number>, "choice": <name or position>}; nothing was stored' });
    }
    if (status === 400 && (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError || /JSON/i.test(err.message))) {
      return reply.code(400).send({ error: `malformed JSON: ${err.message}; nothing was stored` });
    }
    if (status >= 400 && status < 500) return reply.code(status).send({ error: err.message });
    node.log.error({ err: err.message, stack: err.stack }, 'request failed');
    return reply.code(500).send({ error: `internal error: ${err.message}` });
  });

  app.addHook('onResponse', (req, reply, done) => {
    node.metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
    done();
  });

  app.get('/health', async (_req, reply) => {
    const h = await node.freshHealth();
    return reply.code(h.healthy ? 200 : 503).send(h);
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', node.metrics.registry.contentType);
    return node.metrics.registry.metrics();
  });

  app.post('/votes', { bodyLimit: MAX_VOTE_BODY_BYTES }, async (req, reply) => {
    const t0 = performance.now();
    const view = ready(node, reply);
    if (!view) return reply;
    const a = await castOne(node, view, req.body);
    node.metrics.voteSeconds.observe((performance.now() - t0) / 1000);
    if (a.status === 503) reply.header('retry-after', RETRY_AFTER_S);
    return reply.code(a.status).send(a.body);
  });

  app.post('/votes/batch', async (req, reply) => {
    const t0 = performance.now();
    const view = ready(node, reply);
    if (!view) return reply;
    const body = req.body as { votes?: unknown } | null;
    if (!body || typeof body !== 'object' || Array.isArray(body) || !Array.isArray(body.votes)) {
      return reply.code(400).send({ error: 'body must be {"votes": [{"voterId": ..., "choice": ...}, ...]}; nothing was stored' });
    }
    const votes = body.votes as unknown[];
    if (votes.length === 0) return reply.code(400).send({ error: 'votes: the list is empty' });
    if (votes.length > MAX_BATCH_VOTES) {
      return reply.code(413).send({ error: `votes: ${votes.length} votes in one batch; send at most ${MAX_BATCH_VOTES} per request; nothing was stored` });
    }
    if (node.batcher.room() < votes.length) {
      reply.header('retry-after', RETRY_AFTER_S);
      return reply.code(503).send({ error: `the service is full (${node.batcher.maxQueued} votes waiting); nothing was stored; retry shortly`, reason: 'overloaded' });
    }
    const answers = await Promise.all(votes.map((v) => castOne(node, view, v)));
    const results = answers.map((a) => ({ status: a.status, ...a.body }));
    const count = (s: number) => answers.filter((a) => a.status === s).length;
    node.metrics.voteSeconds.observe((performance.now() - t0) / 1000);
    return reply.code(200).send({
      shard: node.shard,
      epoch: view.record.epoch,
      accepted: count(201),
      duplicates: count(409),
      rejected: answers.filter((a) => a.status === 400 || a.status === 421).length,
      failed: count(503),
      results,
    });
  });

  app.get('/votes/:voterId', async (req: FastifyRequest, reply: FastifyReply) => {
    const view = ready(node, reply);
    if (!view) return reply;
    const raw = (req.params as { voterId: string }).voterId;
    const id = parseVoterIdText(raw, view.rules);
    if (!id.ok) return reply.code(400).send({ error: id.problem, problems: [id.problem] });
    const owner = view.router.shardOf(id.value);
    if (owner !== node.shard) return reply.code(421).send(misdirected(id.value, owner, node.shard));
    const target = node.primary.current;
    if (!target) return unavailable(reply, 'no primary known yet');
    try {
      const v = await node.store.getVote(target.pool, id.value);
      if (!v) return reply.code(404).send({ error: `voter ${id.value} has not voted`, voterId: id.value, shard: node.shard });
      return { voterId: id.value, choice: choiceName(v.choice, view.rules.ballot), choiceIndex: v.choice, castAt: v.castAt, shard: node.shard, epoch: target.epoch };
    } catch (e) {
      return unavailable(reply, `primary ${target.node} did not answer: ${(e as Error).message}`);
    }
  });

  app.get('/tally', async (_req, reply) => {
    const view = ready(node, reply);
    if (!view) return reply;
    const target = node.primary.current;
    if (!target) return unavailable(reply, 'no primary known yet');
    try {
      const t = await node.store.tally(target.pool);
      const counts: Record<string, number> = {};
      view.rules.ballot.forEach((name, i) => (counts[name] = t.counts.get(i + 1) ?? 0));
      for (const [c, n] of t.counts) if (c < 1 || c > view.rules.ballot.length) counts[choiceName(c, view.rules.ballot)] = n;
      return { shard: node.shard, epoch: target.epoch, primary: target.node, ballot: view.rules.ballot, counts, total: t.total };
    } catch (e) {
      return unavailable(reply, `primary ${target.node} did not answer: ${(e as Error).message}`);
    }
  });
}

function ready(node: ShardNode, reply: FastifyReply): ShardView | null {
  const v = node.view();
  if (!v) {
    unavailable(reply, `the shard service is starting (${String(node.health().reason ?? 'waiting for the managers')})`);
    return null;
  }
  return v;
}

function unavailable(reply: FastifyReply, why: string): FastifyReply {
  reply.header('retry-after', RETRY_AFTER_S);
  return reply.code(503).send({ error: `${why}; nothing was stored; retry shortly`, reason: 'unavailable' });
}

function misdirected(voterId: number, owner: number, mine: number): Record<string, unknown> {
  return { error: `voter ${voterId} belongs to shard ${owner}, not shard ${mine}: route by the shard map (GET /v1/shards on a manager)`, voterId, shard: owner };
}

/** Validate, route-check and cast one vote; never throws. */
async function castOne(node: ShardNode, view: ShardView, raw: unknown): Promise<VoteAnswer> {
  const checked = checkVote(raw, view.rules);
  if (!checked.ok) {
    node.metrics.votes.inc({ result: 'rejected' });
    const voterId = raw && typeof raw === 'object' && typeof (raw as { voterId?: unknown }).voterId === 'number' ? (raw as { voterId: number }).voterId : undefined;
    return { status: 400, body: { error: `${checked.problems.join('; ')}; nothing was stored`, problems: checked.problems, ...(voterId !== undefined ? { voterId } : {}) } };
  }
  const vote: ValidVote = checked.value;
  const owner = view.router.shardOf(vote.voterId);
  if (owner !== node.shard) {
    node.metrics.votes.inc({ result: 'rejected' });
    return { status: 421, body: misdirected(vote.voterId, owner, node.shard) };
  }
  let outcome: VoteOutcome;
  try {
    outcome = await node.submit(vote);
  } catch (e) {
    node.metrics.votes.inc({ result: 'failed' });
    return { status: 503, body: { error: `${failureText(e)}; the vote may not be stored: retry (a retry of a stored vote answers 409 with the same choice)`, reason: failureReason(e), voterId: vote.voterId } };
  }
  const body = {
    voterId: vote.voterId,
    choice: choiceName(outcome.choice, view.rules.ballot),
    choiceIndex: outcome.choice,
    castAt: outcome.castAt,
    shard: node.shard,
    epoch: outcome.epoch,
  };
  if (outcome.status === 'accepted') {
    node.metrics.votes.inc({ result: 'accepted' });
    return { status: 201, body };
  }
  node.metrics.votes.inc({ result: 'duplicate' });
  return { status: 409, body: { error: 'already voted', ...body } };
}

function failureReason(e: unknown): string {
  if (e instanceof QueueFullError) return 'overloaded';
  if (e instanceof FencedError) return 'fenced';
  if (e instanceof NoPrimaryError) return 'no primary';
  if (e instanceof NotReadyError) return 'not ready';
  if (e instanceof DetachedError) return 'failover';
  if (e instanceof LogUnavailableError) return 'log unavailable';
  if (e instanceof ReplicaWaitError) return 'replicas behind';
  return 'primary unavailable';
}

function failureText(e: unknown): string {
  if (e instanceof QueueFullError) return `the service is full (${e.limit} votes waiting)`;
  if (e instanceof FencedError) return `the primary refused the write (${e.message})`;
  if (e instanceof NotReadyError || e instanceof DetachedError || e instanceof LogUnavailableError || e instanceof ReplicaWaitError) return e.message;
  return `the primary could not commit (${(e as Error).message})`;
}
