// Group commit for votes, with same-voter serialization.
//
// - Same voter: a vote waits until every earlier vote of the same voter has
//   finished (a promise chain per voter id), so the primary decides a voter's
//   votes in arrival order and the vote log (part B) sees them in that order
//   too. Different voters never wait for each other.
// - Group commit: votes queue up; whenever fewer than `maxInFlight` batches
//   run, everything queued (up to `maxBatch`) goes as one batch to `commit`,
//   on its own pooled connection. Idle, a vote is committed at once (after
//   the current round of I/O callbacks: setImmediate, no timer); under load,
//   batches grow by themselves while the others are in flight, and one
//   transaction (one fsync) carries many votes.
// - Bounded: at most `maxQueued` votes waiting (queued or behind the same
//   voter); beyond that submit() fails with QueueFullError (HTTP 503 +
//   Retry-After) instead of letting latency grow without end.
// - pause()/idle()/resume() let the owner switch primaries between batches.

export interface PendingVote {
  voterId: number;
  /** 1-based ballot position. */
  choice: number;
}

export interface VoteOutcome {
  voterId: number;
  /** accepted: this vote was stored; duplicate: the voter had voted, `choice` is the first vote. */
  status: 'accepted' | 'duplicate';
  choice: number;
  castAt: string;
  epoch: number;
}

/** Commit a batch (no voter twice); resolve with one outcome per vote, in order. */
export type CommitBatch = (votes: PendingVote[]) => Promise<VoteOutcome[]>;

export interface VoteBatcherOptions {
  maxBatch?: number;
  maxInFlight?: number;
  maxQueued?: number;
}

export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(`too many votes waiting (${limit}); retry shortly`);
    this.name = 'QueueFullError';
  }
}

interface Waiter {
  vote: PendingVote;
  resolve: (o: VoteOutcome) => void;
  reject: (e: unknown) => void;
}

export interface BatcherStats {
  /** Votes accepted by submit() and not finished (queued, behind their voter, or in a batch). */
  pending: number;
  queued: number;
  inFlight: number;
  batches: number;
  votes: number;
  largestBatch: number;
}

export class VoteBatcher {
  readonly maxBatch: number;
  readonly maxInFlight: number;
  readonly maxQueued: number;
  private readonly queue: Waiter[] = [];
  private readonly chains = new Map<number, Promise<unknown>>();
  private pendingCount = 0;
  private inFlight = 0;
  private paused = false;
  private pumpScheduled = false;
  private idleWaiters: (() => void)[] = [];
  private batches = 0;
  private votes = 0;
  private largestBatch = 0;
  /** Observers (metrics): batch size and commit time. */
  onBatch: (size: number, ms: number, ok: boolean) => void = () => undefined;

  constructor(
    private readonly commit: CommitBatch,
    opts: VoteBatcherOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 1000;
    this.maxInFlight = opts.maxInFlight ?? 4;
    this.maxQueued = opts.maxQueued ?? 20_000;
  }

  /** Free room for this many more votes right now. */
  room(): number {
    return Math.max(0, this.maxQueued - this.pendingCount);
  }

  submit(vote: PendingVote): Promise<VoteOutcome> {
    if (this.pendingCount >= this.maxQueued) return Promise.reject(new QueueFullError(this.maxQueued));
    this.pendingCount++;
    const id = vote.voterId;
    const prev = this.chains.get(id);
    const run: Promise<VoteOutcome> = prev
      ? prev.then(
          () => this.enqueue(vote),
          () => this.enqueue(vote),
        )
      : this.enqueue(vote);
    this.chains.set(id, run);
    run
      .finally(() => {
        this.pendingCount--;
        if (this.chains.get(id) === run) this.chains.delete(id);
      })
      .catch(() => undefined);
    return run;
  }

  /** Stop starting batches (those in flight finish). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Resolves when no batch is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stats(): BatcherStats {
    return {
      pending: this.pendingCount,
      queued: this.queue.length,
      inFlight: this.inFlight,
      batches: this.batches,
      votes: this.votes,
      largestBatch: this.largestBatch,
    };
  }

  private enqueue(vote: PendingVote): Promise<VoteOutcome> {
    return new Promise<VoteOutcome>((resolve, reject) => {
      this.queue.push({ vote, resolve, reject });
      this.schedulePump();
    });
  }

  /**
   * Start batches once the current round of I/O callbacks is done, so that
   * votes arriving together (a batch request, requests read in one poll)
   * share a batch instead of the first few going alone.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.paused && this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.run(batch);
    }
  }

  private async run(batch: Waiter[]): Promise<void> {
    const t0 = performance.now();
    let ok = false;
    try {
      const outcomes = await this.commit(batch.map((w) => w.vote));
      if (outcomes.length !== batch.length) throw new Error(`commit returned ${outcomes.length} outcomes for ${batch.length} votes`);
      ok = true;
      batch.forEach((w, i) => w.resolve(outcomes[i]!));
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      this.batches++;
      this.votes += batch.length;
      if (batch.length > this.largestBatch) this.largestBatch = batch.length;
      this.onBatch(batch.length, performance.now() - t0, ok);
      this.inFlight--;
      if (this.inFlight === 0) {
        const ws = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of ws) w();
      }
      this.pump();
    }
  }
}
