// The applier: consumes the shard's partition of the vote log into this
// PostgreSQL copy, in order, exactly once.
//
// It reads its position from the copy itself (applied.next_offset and the
// latest barrier), fetches from there with long polling, decides what counts
// with the vote log's rule (services/shard/vote-log-codec.ts planApply), and
// applies each fetched batch in ONE transaction:
//
//   UPDATE applied ... WHERE next_offset = <where we started>  (the guard)
//   INSERT INTO votes ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING
//   DELETE FROM outbox WHERE (voter_ids[1], cast_us) IN (...)
//                              (the primary's outbox rows of batches now in
//                               the log: a batch is appended whole, so its
//                               first vote with its cast time stands for it)
//   pg_notify('dvote_applied', <new next offset>)  (sync mode listens)
//
// They are separate statements on purpose: on the primary, the INSERT may
// wait for the vote batch that is writing the same voters (unique index),
// and only a statement started after that wait sees the outbox rows the
// batch committed, so the DELETE must come after it, not share its snapshot.
// A crash between fetch and commit re-fetches the same offsets; a commit
// moves the offset with the votes. It runs on replicas, and on the primary
// too: there it is the safety net (a vote that reached the log but not the
// primary's commit gets in) and the one owner of outbox deletions.
import pg from 'pg';
import { BrokerRequestError, type BrokerClient } from '../../client/broker-client.js';
import { VOTE_TOPIC } from '../../core/shard-records.js';
import type { Logger } from '../common/logger.js';
import { planApply, type BarrierState } from '../shard/vote-log-codec.js';
import { APPLIED_CHANNEL, pgConnection } from './pg-schema.js';

const FETCH_MAX = 5_000;
const FETCH_WAIT_MS = 500;
/** After a small batch, let the log gather a little before fetching again (fewer, larger transactions under load). */
const SMALL_BATCH = 500;

export interface ApplierStatus {
  running: boolean;
  /** The next offset this copy will apply (null until read). */
  nextOffset: number | null;
  /** The partition's high watermark at the last fetch. */
  highWatermark: number | null;
  /** highWatermark - nextOffset (null until known). */
  lag: number | null;
  barrier: BarrierState;
  applied: number;
  inserted: number;
  skipped: number;
  lastError: string | null;
}

export interface ApplierOptions {
  /** "host:port" of this copy's PostgreSQL. */
  address: string;
  applicationName: string;
  brokers: BrokerClient;
  partition: number;
  /** Partitions of the vote topic (to create it if the applier is first). */
  partitions: number;
  log: Logger;
  /** Least time between two fetches after a small batch (default 5 ms; sync mode wants less). */
  gatherMs?: () => number;
}

export class ReplicaApplier {
  private running = false;
  private loopDone: Promise<void> | null = null;
  private client: pg.Client | null = null;
  private next: number | null = null;
  private hw: number | null = null;
  private barrier: BarrierState = { epoch: 0, writer: 0 };
  private counters = { applied: 0, inserted: 0, skipped: 0 };
  private lastError: string | null = null;
  private listeners: (() => void)[] = [];

  constructor(private readonly o: ApplierOptions) {}

  get isRunning(): boolean {
    return this.running;
  }

  status(): ApplierStatus {
    return {
      running: this.running,
      nextOffset: this.next,
      highWatermark: this.hw,
      lag: this.hw !== null && this.next !== null ? Math.max(0, this.hw - this.next) : null,
      barrier: { ...this.barrier },
      ...this.counters,
      lastError: this.lastError,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeListeners();
    await this.loopDone?.catch(() => undefined);
    this.loopDone = null;
  }

  /** Resolves true once the applier has met a barrier of `epoch` or later (false if stopped or the signal aborted). */
  async waitBarrier(epoch: number, signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      if (this.barrier.epoch >= epoch) return true;
      if (!this.running) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 1_000);
        const onAbort = () => done();
        signal.addEventListener('abort', onAbort, { once: true });
        this.listeners.push(done);
        function done() {
          clearTimeout(t);
          signal.removeEventListener('abort', onAbort);
          resolve();
        }
      });
    }
    return false;
  }

  private wakeListeners(): void {
    const ls = this.listeners;
    this.listeners = [];
    for (const l of ls) l();
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client({ ...pgConnection(this.o.address, `${this.o.applicationName}-applier`), connectionTimeoutMillis: 5_000 });
    c.on('error', (e) => {
      this.lastError = `connection to the local PostgreSQL failed: ${e.message}`;
    });
    await c.connect();
    await c.query('INSERT INTO applied (partition, next_offset) VALUES ($1, 0) ON CONFLICT (partition) DO NOTHING', [this.o.partition]);
    const r = await c.query<{ next_offset: number; barrier_epoch: number; barrier_writer: number }>(
      'SELECT next_offset, barrier_epoch, barrier_writer FROM applied WHERE partition = $1',
      [this.o.partition],
    );
    const row = r.rows[0]!;
    this.next = row.next_offset;
    this.barrier = { epoch: row.barrier_epoch, writer: row.barrier_writer };
    return c;
  }

  /**
   * One transaction, one round trip: the statements travel together as one
   * simple-protocol query (each still gets its own snapshot). The arrays are
   * written as literals, safe because they hold only integers checked here.
   */
  private async apply(c: pg.Client, from: number, to: number, plan: ReturnType<typeof planApply>): Promise<{ advanced: boolean; inserted: number }> {
    const ints = (xs: number[]) => {
      for (const x of xs) if (!Number.isSafeInteger(x)) throw new Error(`not an integer: ${x}`);
      return `'{${xs.join(',')}}'`;
    };
    for (const x of [from, to, plan.state.epoch, plan.state.writer, this.o.partition]) if (!Number.isSafeInteger(x)) throw new Error(`not an integer: ${x}`);
    const guard = `EXISTS (SELECT 1 FROM applied WHERE partition = ${this.o.partition} AND next_offset = ${to})`;
    const parts = [
      'BEGIN',
      `UPDATE applied SET next_offset = ${to}, barrier_epoch = ${plan.state.epoch}, barrier_writer = ${plan.state.writer} WHERE partition = ${this.o.partition} AND next_offset = ${from}`,
    ];
    if (plan.votes.length > 0) {
      const ids = ints(plan.votes.map((v) => v.voterId));
      const casts = ints(plan.votes.map((v) => v.castAtUs));
      parts.push(
        `INSERT INTO votes (voter_id, choice, cast_at)
         SELECT v.voter_id, v.choice, (timestamptz 'epoch' + v.us * interval '1 microsecond')
         FROM unnest(${ids}::bigint[], ${ints(plan.votes.map((v) => v.choice))}::smallint[], ${casts}::bigint[])
              WITH ORDINALITY AS v(voter_id, choice, us, ord)
         WHERE ${guard}
         ORDER BY v.ord
         ON CONFLICT (voter_id) DO NOTHING`,
        `DELETE FROM outbox WHERE cast_us = ANY(${ints([...new Set(plan.votes.map((v) => v.castAtUs))])}::bigint[])
           AND (voter_ids[1], cast_us) IN (SELECT * FROM unnest(${ids}::bigint[], ${casts}::bigint[]))
           AND ${guard}`,
      );
    }
    parts.push(`SELECT ${guard} AS advanced, pg_notify('${APPLIED_CHANNEL}', '${to}')`, 'COMMIT');
    try {
      const results = (await c.query(parts.join(';\n'))) as unknown as pg.QueryResult[];
      const insert = plan.votes.length > 0 ? results[2] : undefined;
      const check = results[results.length - 2]!;
      return { advanced: (check.rows[0] as { advanced: boolean }).advanced, inserted: insert?.rowCount ?? 0 };
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let lastSmallAt = 0;
    while (this.running) {
      try {
        this.client ??= await this.connect();
        const gather = this.o.gatherMs?.() ?? 5;
        const wait = lastSmallAt + gather - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const from = this.next!;
        let r;
        try {
          r = await this.o.brokers.fetch(VOTE_TOPIC, this.o.partition, from, { maxMessages: FETCH_MAX, waitMs: FETCH_WAIT_MS });
        } catch (e) {
          if (e instanceof BrokerRequestError && e.status === 404) {
            // No vote topic yet (no vote written): create it, the writer does the same.
            await this.o.brokers.createTopic(VOTE_TOPIC, { partitions: this.o.partitions }).catch(() => undefined);
          }
          throw e;
        }
        this.hw = r.highWatermark;
        if (!this.running) break;
        if (r.messages.length === 0) {
          failures = 0;
          continue;
        }
        lastSmallAt = r.messages.length < SMALL_BATCH ? performance.now() : 0;
        if (r.messages[0]!.offset !== from) throw new Error(`the log answered from offset ${r.messages[0]!.offset}, not ${from}`);
        const plan = planApply(
          r.messages.map((m) => m.value),
          this.barrier,
        );
        const to = from + r.messages.length;
        const res = await this.apply(this.client, from, to, plan);
        if (!res.advanced) {
          // Someone else moved the offset (the copy was re-seeded): read it again.
          this.o.log.warn({ from }, 'applied offset changed under the applier; reading it again');
          await this.client.end().catch(() => undefined);
          this.client = null;
          continue;
        }
        this.next = to;
        this.barrier = plan.state;
        this.counters.applied += r.messages.length;
        this.counters.inserted += res.inserted;
        this.counters.skipped += plan.skipped;
        this.lastError = null;
        failures = 0;
        if (plan.barriers.length > 0) this.o.log.info({ barrier: plan.state, offset: to }, 'applier met a barrier');
        this.wakeListeners();
      } catch (e) {
        this.lastError = (e as Error).message;
        if (failures++ % 20 === 0) this.o.log.warn({ err: this.lastError }, 'applier round failed; retrying');
        if (this.client && /connection|terminat|ECONN|closed/i.test(this.lastError)) {
          await this.client.end().catch(() => undefined);
          this.client = null;
        }
        await new Promise((r) => setTimeout(r, Math.min(100 * failures, 1_000)));
      }
    }
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }
}
