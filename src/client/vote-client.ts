// Client SDK for voting: routes each voter to its shard (the shard map and
// shard records from the managers), talks to that shard's service over kept-
// alive connections (undici), batches, and retries what is safe to retry.
// Used by `dvote vote`, `dvote tally` and the bench.
//
// Retries: a 503 (service starting, full, or its primary unreachable: the
// vote was not stored) and a refused connection are retried until the
// deadline; a 421 (wrong shard) refreshes the shard map first. A timeout or a
// reset after the request was sent leaves the outcome unknown; the retry then
// answers 201 (it was not stored) or 409 with the stored choice, and the
// result says `retriedAfterUnknown` so a checker can tell.
import { Agent, errors as undiciErrors } from 'undici';
import { jsonCall, splitBaseUrl } from './http-call.js';
import { ShardRouter } from '../core/shard-map.js';
import type { ShardRecord } from '../core/shard-records.js';
import { checkChoice, checkVoterId, parseVoterIdText, type VoteRules } from '../core/vote-validation.js';
import { ShardDirectory, type ShardsSnapshot } from './shard-directory.js';

export interface VoteClientOptions {
  /** Manager HTTP addresses ("host:port" or URLs). */
  managers: string[];
  /**
   * The base URL to reach a shard service by (node name, advertised "host:port").
   * Default: http://<advertised>. The CLI passes the runtime's host-reachable endpoint.
   */
  endpointOf?: (node: string, advertised: string) => string;
  /** Kept-alive connections per shard service (default 32). */
  connections?: number;
  /** Give up on one vote or batch after this long (default 15 s). */
  timeoutMs?: number;
  /** Per-request timeout (default 10 s). */
  attemptTimeoutMs?: number;
}

export type VoteStatus = 'accepted' | 'already-voted' | 'invalid' | 'failed';

export interface VoteResult {
  voterId: number | string;
  status: VoteStatus;
  /** The shard service's HTTP status (0 when no answer came). */
  httpStatus: number;
  /** Stored choice: this vote's (accepted) or the first vote's (already-voted). */
  choice?: string;
  choiceIndex?: number;
  shard?: number;
  epoch?: number;
  castAt?: string;
  error?: string;
  attempts: number;
  /** A try before the final one may have been stored (timeout or reset after sending). */
  retriedAfterUnknown?: boolean;
}

export interface VoteInput {
  voterId: number | string;
  choice: string | number;
}

export interface ShardTally {
  shard: number;
  epoch?: number;
  primary?: string;
  counts?: Record<string, number>;
  total?: number;
  error?: string;
}

export interface TallyResult {
  ballot: string[];
  shards: ShardTally[];
  counts: Record<string, number>;
  total: number;
  complete: boolean;
}

export class VoteClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VoteClientError';
  }
}

/** Most votes sent in one POST /votes/batch (the service's limit). */
export const BATCH_LIMIT = 1000;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

export class VoteClient {
  readonly directory: ShardDirectory;
  private readonly agent: Agent;
  private readonly endpointOf: (node: string, advertised: string) => string;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private router: ShardRouter | null = null;
  private snap: ShardsSnapshot | null = null;

  constructor(opts: VoteClientOptions) {
    this.directory = new ShardDirectory({ managers: opts.managers, timeoutMs: 10_000 });
    this.agent = new Agent({ connections: opts.connections ?? 32, keepAliveTimeout: 30_000, pipelining: 1 });
    this.endpointOf = opts.endpointOf ?? ((_n, adv) => `http://${adv}`);
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 10_000;
  }

  /** Read the shard map and records (linearizable). Called by the first vote if not before. */
  async connect(): Promise<ShardsSnapshot> {
    const snap = await this.directory.refresh();
    if (!snap.topology) throw new VoteClientError('the managers hold no topology: is the cluster up? (dvote up)');
    if (!snap.shardMap || snap.shards.length === 0) throw new VoteClientError('the cluster has no voting shards (its topology has shards: 0)');
    this.router = new ShardRouter(snap.shardMap);
    this.snap = snap;
    return snap;
  }

  async close(): Promise<void> {
    await this.directory.stop();
    await this.agent.close();
  }

  /** Ballot and voter id range of the cluster. */
  async rules(): Promise<VoteRules> {
    const s = this.snap ?? (await this.connect());
    return { ballot: s.topology!.ballot, voterIds: s.topology!.voterIds };
  }

  async shardOf(voterId: number): Promise<number> {
    if (!this.router) await this.connect();
    return this.router!.shardOf(voterId);
  }

  async vote(voterId: number | string, choice: string | number): Promise<VoteResult> {
    const [r] = await this.voteBatch([{ voterId, choice }], { single: true });
    return r!;
  }

  /**
   * Cast many votes: grouped by shard, sent as POST /votes/batch (up to 1000
   * per request) to every shard in parallel; one result per vote, in order.
   */
  async voteBatch(votes: VoteInput[], opts: { single?: boolean } = {}): Promise<VoteResult[]> {
    if (!this.snap) await this.connect();
    const rules = await this.rules();
    const results = new Array<VoteResult>(votes.length);
    // index lists per shard of the votes still to send
    let todo = new Map<number, number[]>();
    const parsed: { voterId: number; choice: string | number }[] = [];
    votes.forEach((v, i) => {
      const id = typeof v.voterId === 'string' ? parseVoterIdText(v.voterId, rules) : checkVoterId(v.voterId, rules);
      const c = checkChoice(v.choice, rules);
      if (!id.ok || !c.ok) {
        const problems = [...(id.ok ? [] : [id.problem]), ...(c.ok ? [] : [c.problem])];
        results[i] = { voterId: v.voterId, status: 'invalid', httpStatus: 0, error: problems.join('; '), attempts: 0 };
        return;
      }
      parsed[i] = { voterId: id.value, choice: v.choice };
      const s = this.router!.shardOf(id.value);
      (todo.get(s) ?? todo.set(s, []).get(s)!).push(i);
    });
    const attempts = new Array<number>(votes.length).fill(0);
    const unknown = new Array<boolean>(votes.length).fill(false);
    const deadline = Date.now() + this.timeoutMs;
    let round = 0;
    while (todo.size > 0) {
      const retry = new Map<number, number[]>();
      let refresh = false;
      let wait = 0;
      await Promise.all(
        [...todo].map(async ([shard, idxs]) => {
          for (let k = 0; k < idxs.length; k += BATCH_LIMIT) {
            const chunk = idxs.slice(k, k + BATCH_LIMIT);
            for (const i of chunk) attempts[i]!++;
            const sent = await this.send(shard, chunk.map((i) => parsed[i]!), opts.single === true);
            chunk.forEach((i, j) => {
              const a = sent.kind === 'answers' ? sent.answers[j]! : null;
              const status = a?.status ?? 0;
              if (sent.kind === 'unknown') unknown[i] = true;
              const again = sent.kind !== 'answers' || status === 503 || status === 421;
              if (again && Date.now() < deadline) {
                if (status === 421) refresh = true;
                const target = status === 421 && typeof a?.body.shard === 'number' ? (a.body.shard as number) : shard;
                (retry.get(target) ?? retry.set(target, []).get(target)!).push(i);
                wait = Math.max(wait, sent.kind === 'answers' ? sent.retryAfterMs : 0);
                return;
              }
              results[i] = toResult(votes[i]!.voterId, sent, a, attempts[i]!, unknown[i]!);
            });
          }
        }),
      );
      if (retry.size === 0) break;
      round++;
      if (refresh) await this.connect().catch(() => undefined);
      await sleep(Math.min(Math.max(wait, 25 * round), 1_000, Math.max(0, deadline - Date.now())));
      todo = retry;
    }
    return results;
  }

  async getVote(voterId: number | string): Promise<{ found: false; shard: number } | { found: true; shard: number; choice: string; choiceIndex: number; castAt: string }> {
    const rules = await this.rules();
    const id = typeof voterId === 'string' ? parseVoterIdText(voterId, rules) : checkVoterId(voterId, rules);
    if (!id.ok) throw new VoteClientError(id.problem);
    const shard = await this.shardOf(id.value);
    const a = await this.call(shard, 'GET', `/votes/${id.value}`);
    if (a.status === 404) return { found: false, shard };
    if (a.status !== 200) throw new VoteClientError(`shard ${shard}: ${String(a.body.error ?? a.status)}`);
    return { found: true, shard, choice: String(a.body.choice), choiceIndex: Number(a.body.choiceIndex), castAt: String(a.body.castAt) };
  }

  /** Each shard's tally from its primary, and the sum. */
  async tally(): Promise<TallyResult> {
    const snap = await this.connect();
    const ballot = snap.topology!.ballot;
    const shards = await Promise.all(
      snap.shards.map(async (rec): Promise<ShardTally> => {
        try {
          const a = await this.call(rec.shard, 'GET', '/tally');
          if (a.status !== 200) return { shard: rec.shard, error: String(a.body.error ?? `HTTP ${a.status}`) };
          return { shard: rec.shard, epoch: Number(a.body.epoch), primary: String(a.body.primary), counts: a.body.counts as Record<string, number>, total: Number(a.body.total) };
        } catch (e) {
          return { shard: rec.shard, error: (e as Error).message };
        }
      }),
    );
    const counts: Record<string, number> = Object.fromEntries(ballot.map((b) => [b, 0]));
    let total = 0;
    for (const s of shards) {
      for (const [k, n] of Object.entries(s.counts ?? {})) counts[k] = (counts[k] ?? 0) + n;
      total += s.total ?? 0;
    }
    return { ballot, shards, counts, total, complete: shards.every((s) => !s.error) };
  }

  /** Base URL of a shard's service. */
  serviceUrl(shard: number): string {
    const rec = this.record(shard);
    const adv = rec.members[rec.service]?.http;
    if (!adv) throw new VoteClientError(`shard ${shard}'s record has no address for its service ${rec.service}`);
    return this.endpointOf(rec.service, adv).replace(/\/$/, '');
  }

  private record(shard: number): ShardRecord {
    const rec = this.snap?.shards.find((r) => r.shard === shard);
    if (!rec) throw new VoteClientError(`no record for shard ${shard} in the managers`);
    return rec;
  }

  private async send(
    shard: number,
    votes: { voterId: number; choice: string | number }[],
    single: boolean,
  ): Promise<{ kind: 'answers'; answers: Answer[]; retryAfterMs: number } | { kind: 'refused' | 'unknown'; error: string }> {
    try {
      if (single) {
        const a = await this.call(shard, 'POST', '/votes', votes[0]);
        return { kind: 'answers', answers: [a], retryAfterMs: retryAfterMs(a) };
      }
      const a = await this.call(shard, 'POST', '/votes/batch', { votes });
      if (a.status === 200 && Array.isArray(a.body.results)) {
        const answers = (a.body.results as Record<string, unknown>[]).map((r) => ({ status: Number(r.status), body: r }));
        return { kind: 'answers', answers, retryAfterMs: answers.some((x) => x.status === 503) ? 200 : 0 };
      }
      // The request as a whole was refused (503 full, 400...): the same answer for every vote.
      return { kind: 'answers', answers: votes.map(() => a), retryAfterMs: retryAfterMs(a) };
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      const refused = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || e instanceof undiciErrors.ConnectTimeoutError;
      return { kind: refused ? 'refused' : 'unknown', error: `${this.safeUrl(shard)}: ${(e as Error).message}` };
    }
  }

  private safeUrl(shard: number): string {
    try {
      return this.serviceUrl(shard);
    } catch {
      return `shard ${shard}`;
    }
  }

  private async call(shard: number, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
    const base = splitBaseUrl(this.serviceUrl(shard));
    const a = await jsonCall(this.agent, { origin: base.origin, path: base.prefix + path, method, body, timeoutMs: this.attemptTimeoutMs });
    if (a.retryAfter !== undefined) a.body.__retryAfter = Number(a.retryAfter);
    return { status: a.status, body: a.body };
  }
}

function retryAfterMs(a: Answer): number {
  const s = Number(a.body.__retryAfter);
  return Number.isFinite(s) && s > 0 ? Math.min(s * 1000, 1_000) : a.status === 503 ? 100 : 0;
}

// (Built field by field: with a batch of answers per request this runs for
// every vote, and object spreads made it the load generator's top function.)
function toResult(
  voterId: number | string,
  sent: { kind: 'answers' } | { kind: 'refused' | 'unknown'; error: string },
  a: Answer | null,
  attempts: number,
  unknown: boolean,
): VoteResult {
  if (!a) {
    const r: VoteResult = { voterId, status: 'failed', httpStatus: 0, error: (sent as { error: string }).error, attempts };
    if (unknown) r.retriedAfterUnknown = true;
    return r;
  }
  const b = a.body;
  const r = { voterId: typeof b.voterId === 'number' ? b.voterId : voterId, httpStatus: a.status, attempts } as VoteResult;
  if (typeof b.shard === 'number') r.shard = b.shard;
  if (typeof b.epoch === 'number') r.epoch = b.epoch;
  if (unknown) r.retriedAfterUnknown = true;
  const ok = a.status === 201 || a.status === 409;
  if (ok) {
    if (typeof b.choice === 'string') r.choice = b.choice;
    if (typeof b.choiceIndex === 'number') r.choiceIndex = b.choiceIndex;
    if (typeof b.castAt === 'string') r.castAt = b.castAt;
  }
  if (a.status === 201) {
    r.status = 'accepted';
  } else if (a.status === 409) {
    r.status = 'already-voted';
    r.error = 'already voted';
  } else {
    r.status = a.status === 400 || a.status === 413 || a.status === 415 || a.status === 421 ? 'invalid' : 'failed';
    r.error = String(b.error ?? `HTTP ${a.status}`);
  }
  return r;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
