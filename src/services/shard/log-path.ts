// Replication modes "log" (the default) and "sync" with brokers.
//
// Per batch, in parallel: the primary commit (votes + outbox rows, one
// statement: vote-store.ts) and one append to the shard's partition of the
// vote log (one entry per vote, vote-log-codec.ts) under (producer, seq), so
// a retry is stored once. A vote is acknowledged only when both succeeded and
// the attachment is still the current one; "sync" then also waits until
// every available replica has applied the batch's last offset
// (replica-progress.ts).
//
// Keeping the primary's decisions and the log in agreement. Replicas apply
// the log with "first entry of a voter wins"; the primary decides with "first
// committed vote wins". They agree because same-voter votes are serialized
// (vote-batcher.ts): a voter's next vote starts only after the previous one
// was answered. That is enough only if, when a vote is answered, its entry is
// both in the primary and in the log. So when one side of a batch fails (the
// batch is answered 503, outcome unknown), the path settles it before any
// later batch starts: it retries the failed side (the append with the same
// producer and seq; the commit with ON CONFLICT DO NOTHING) until it succeeds
// or the attachment ends (then the barrier rule of the next attachment takes
// over: entries of the old one landing late count nowhere, and the promoted
// copy or the re-attached primary has replayed everything before the new
// barrier). Later batches wait for that (a bounded time, then 503 with
// nothing stored).
//
// Attaching (service start, failover, epoch change): append this writer's
// barrier, wait until the primary's own applier has applied the log up to it
// (so every vote of earlier attachments that reached the log is in the
// primary before it decides anything new, and its outbox no longer holds
// them), ship whatever the outbox still holds (votes of a writer that died
// between its commit and its append), wait until the primary's fence says
// primary at this epoch, then take votes.
import type { ReplicationMode } from '../../core/topology.js';
import { sleep, DetachedError, type Offsets } from './vote-log.js';
import { encodeVote } from './vote-log-codec.js';
import { OutboxRelay } from './outbox-relay.js';
import { AttachedPath, NotReadyError, timed, type Attachment, type PathDeps, type ReplicationInfo } from './replication-path.js';
import { ReplicaProgress } from './replica-progress.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';
import type { PrimaryTarget } from './primary-connection.js';
import { castAtNow } from './vote-store.js';
import type { VoteLogWriter } from './vote-log.js';
import type { ShardRecord } from '../../core/shard-records.js';

/** How long one batch's append may retry before the batch is answered 503 (and settled in the background). */
export const APPEND_DEADLINE_MS = 8_000;
/** How long a batch waits for an earlier unsettled batch. */
const SETTLE_WAIT_MS = 5_000;
/** sync: how long a batch waits for the replicas to apply it. */
export const SYNC_WAIT_MS = 10_000;

/** sync: the batch is stored on the primary and in the log, but not every replica confirmed it in time. */
export class ReplicaWaitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplicaWaitError';
  }
}

interface Unsettled {
  att: Attachment;
  batch: PendingVote[];
  castAtUs: number;
  values: Uint8Array[];
  producer: string;
  seq: number;
  needCommit: boolean;
  needAppend: boolean;
}

export class LogPath extends AttachedPath {
  private readonly writer: VoteLogWriter;
  private readonly relay: OutboxRelay;
  private readonly progress: ReplicaProgress | null;
  private seq = 0;
  private unsettled = 0;
  private settledWaiters: (() => void)[] = [];
  private settling: string | null = null;

  constructor(
    readonly mode: Extract<ReplicationMode, 'log' | 'sync'>,
    deps: PathDeps,
  ) {
    super(deps);
    if (!deps.writer) throw new Error(`replication "${mode}" through the vote log needs brokers`);
    this.writer = deps.writer;
    this.relay = new OutboxRelay('leftovers', this.writer, deps.log);
    this.progress = mode === 'sync' ? new ReplicaProgress(deps.partition, deps.node, deps.log) : null;
  }

  protected async prepare(att: Attachment): Promise<void> {
    this.unsettled = 0;
    this.releaseSettled();
    this.writer.nextAttachment();
    this.setReplicas(att.record);
    const epoch = att.target.epoch;
    let barrierAt = -1;
    while (barrierAt < 0 && !att.signal.aborted) {
      this.waitingFor = `the vote log to take the barrier of epoch ${epoch}${this.writer.lastError ? ` (${this.writer.lastError})` : ''}`;
      try {
        barrierAt = await this.writer.barrier(epoch, this.seq++, att.signal);
      } catch (e) {
        if (e instanceof DetachedError) return;
        await sleep(500, att.signal);
      }
    }
    await waitPrimaryApplied(att, this.deps.partition, barrierAt + 1, (w) => (this.waitingFor = w));
    this.waitingFor = `shipping what ${att.target.node}'s outbox holds from earlier attachments`;
    await this.relay.attach({ pool: att.target.pool, epoch, signal: att.signal, barrier: async () => undefined });
    await this.waitWritable(att);
  }

  override detach(): void {
    super.detach();
    this.releaseSettled();
  }

  override updateRecord(record: ShardRecord): void {
    this.setReplicas(record);
  }

  private setReplicas(record: ShardRecord): void {
    this.progress?.setReplicas(
      record.replicas.map((r) => ({ node: r, address: record.members[r]?.pg ?? '' })).filter((r) => r.address !== ''),
    );
  }

  async commit(batch: PendingVote[], _primary: PrimaryTarget): Promise<VoteOutcome[]> {
    const att = await this.attached();
    await this.waitSettled(att);
    const target = att.target;
    const castAtUs = castAtNow();
    const seq = this.seq++;
    const producer = this.writer.producer('v');
    const values = batch.map((v) =>
      encodeVote({ voterId: v.voterId, choice: v.choice, castAtUs, epoch: target.epoch, writer: this.writer.writer }),
    );
    const [c, a] = await Promise.allSettled([
      timed(this.deps, 'primary', this.deps.store.commitBatch(target.pool, target.epoch, batch, castAtUs)),
      timed(this.deps, 'log', this.writer.append(values, producer, seq, { signal: att.signal, deadline: Date.now() + APPEND_DEADLINE_MS })),
    ]);
    if (c.status === 'fulfilled' && a.status === 'fulfilled') {
      // Acknowledge only within the attachment: its barrier successor is
      // appended after this point, so this batch's entries precede it.
      if (att.signal.aborted || this.att !== att) throw new DetachedError();
      if (this.progress) await timed(this.deps, 'replicas', this.waitReplicas(att, a.value));
      return c.value;
    }
    if (att.signal.aborted || this.att !== att) throw new DetachedError();
    this.settleLater({ att, batch, castAtUs, values, producer, seq, needCommit: c.status === 'rejected', needAppend: a.status === 'rejected' });
    throw c.status === 'rejected' ? c.reason : (a as PromiseRejectedResult).reason;
  }

  private async waitReplicas(att: Attachment, offsets: Offsets): Promise<void> {
    const ok = await this.progress!.waitApplied(offsets.lastOffset, att.signal, SYNC_WAIT_MS);
    if (!ok) {
      const slow = this.progress!.view().filter((r) => r.available && (r.nextOffset ?? 0) <= offsets.lastOffset).map((r) => r.node);
      throw new ReplicaWaitError(
        `stored on the primary and in the vote log, but ${slow.length ? slow.join(', ') : 'a replica'} did not apply it within ${SYNC_WAIT_MS} ms`,
      );
    }
  }

  /** Retry the failed side of a batch until it succeeds or the attachment ends; later batches wait. */
  private settleLater(u: Unsettled): void {
    this.unsettled++;
    this.settling = `settling a batch of ${u.batch.length} vote(s) whose ${u.needAppend ? 'log append' : 'primary commit'} failed`;
    void (async () => {
      for (let attempt = 0; !u.att.signal.aborted; attempt++) {
        try {
          if (u.needAppend) {
            await this.writer.append(u.values, u.producer, u.seq, { signal: u.att.signal, deadline: Infinity });
            u.needAppend = false;
          }
          if (u.needCommit) {
            await this.deps.store.commitBatch(u.att.target.pool, u.att.target.epoch, u.batch, u.castAtUs);
            u.needCommit = false;
          }
          break;
        } catch (e) {
          if (u.att.signal.aborted) break;
          if (attempt % 20 === 0) this.deps.log.warn({ err: (e as Error).message, votes: u.batch.length }, 'settling a failed batch; retrying');
          await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500), u.att.signal);
        }
      }
      if (this.att === u.att) {
        this.unsettled--;
        if (this.unsettled === 0) this.releaseSettled();
      }
    })();
  }

  private releaseSettled(): void {
    this.settling = null;
    const ws = this.settledWaiters;
    this.settledWaiters = [];
    for (const w of ws) w();
  }

  private async waitSettled(att: Attachment): Promise<void> {
    const deadline = Date.now() + SETTLE_WAIT_MS;
    while (this.unsettled > 0 && this.att === att && !att.signal.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) throw new NotReadyError(`the vote log is not available (${this.settling ?? 'an earlier batch is being settled'}; ${this.writer.lastError ?? 'no error yet'})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.settledWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.att !== att || att.signal.aborted) throw new DetachedError();
  }

  describe(): ReplicationInfo {
    return {
      mode: this.mode,
      acknowledgedAfter: this.mode === 'sync' ? 'primary commit, log append, then every available replica applied' : 'primary commit and log append (in parallel)',
      replicasFed: true,
      ready: this.ready,
      ...(this.ready ? {} : { waitingFor: this.waitingFor }),
      ...(this.settling ? { note: this.settling } : {}),
      atRisk: 0,
      outbox: this.relay.outboxVotes,
      log: { writer: this.writer.writer.toString(16), appended: this.writer.appended, lastError: this.writer.lastError },
      ...(this.progress ? { replicas: this.progress.view() } : {}),
    };
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.progress?.close();
  }
}

/** Wait until the primary's applier has applied the log up to `next` (its applied.next_offset >= next). */
export async function waitPrimaryApplied(att: Attachment, partition: number, next: number, status: (what: string) => void): Promise<void> {
  for (let i = 0; !att.signal.aborted; i++) {
    let at: number | null = null;
    try {
      const r = await att.target.pool.query<{ next_offset: number }>('SELECT next_offset FROM applied WHERE partition = $1', [partition]);
      at = r.rows[0]?.next_offset ?? null;
      if (at !== null && at >= next) return;
      status(`${att.target.node} to apply the vote log up to offset ${next} (it is at ${at ?? 'nothing yet'})`);
    } catch (e) {
      status(`${att.target.node} to answer (${(e as Error).message})`);
    }
    await sleep(Math.min(20 + i * 10, 200), att.signal);
  }
}
