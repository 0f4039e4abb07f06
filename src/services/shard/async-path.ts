// Replication mode "async" (the original DisVote): a vote is acknowledged
// after the primary commit, which writes the vote and its outbox row in one
// transaction; the outbox relay (continuous) ships the rows to the vote log
// right behind, and the replicas apply the log. Only accepted (first) votes
// reach the log, so the log agrees with the primary by construction.
//
// What is in the outbox and not yet shipped is at risk: losing the primary's
// disk now loses it. The count is exact for this process (rows at attach +
// votes accepted since - rows shipped since), shown in /health, in the
// dvote_votes_at_risk gauge and in the heartbeat the managers record with a
// failover; when an attachment ends (a failover), its last count is reported
// as the votes the deposed primary may have taken with it.
import { DetachedError, sleep } from './vote-log.js';
import { OutboxRelay } from './outbox-relay.js';
import { AttachedPath, timed, type Attachment, type PathDeps, type ReplicationInfo } from './replication-path.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';
import type { PrimaryTarget } from './primary-connection.js';
import { castAtNow } from './vote-store.js';
import type { VoteLogWriter } from './vote-log.js';

export class AsyncPath extends AttachedPath {
  readonly mode = 'async' as const;
  private readonly writer: VoteLogWriter;
  private readonly relay: OutboxRelay;
  private seq = 0;

  constructor(deps: PathDeps) {
    super(deps);
    if (!deps.writer) throw new Error('replication "async" ships votes through the vote log and needs brokers');
    this.writer = deps.writer;
    this.relay = new OutboxRelay('continuous', this.writer, deps.log);
  }

  protected async prepare(att: Attachment): Promise<void> {
    this.writer.nextAttachment();
    let barrier: Promise<void> | null = null;
    const epoch = att.target.epoch;
    // The relay appends this attachment's barrier before its first row; the
    // vote path does not wait for the log.
    const ensureBarrier = (): Promise<void> =>
      (barrier ??= (async () => {
        for (;;) {
          try {
            await this.writer.barrier(epoch, this.seq++, att.signal);
            return;
          } catch (e) {
            if (e instanceof DetachedError || att.signal.aborted) throw new DetachedError();
            await sleep(500, att.signal);
          }
        }
      })().catch((e: unknown) => {
        barrier = null;
        throw e;
      }));
    void this.relay.attach({ pool: att.target.pool, epoch, signal: att.signal, barrier: ensureBarrier });
    await this.waitWritable(att);
  }

  override detach(): void {
    const att = this.att;
    if (att) {
      this.deps.log.info({ primary: att.target.node, epoch: att.target.epoch, ...this.relay.counters() }, 'async attachment ended');
      this.deps.onAttachmentEnded?.({ epoch: att.target.epoch, primary: att.target.node, atRisk: this.relay.atRisk() });
    }
    super.detach();
  }

  async commit(batch: PendingVote[], _primary: PrimaryTarget): Promise<VoteOutcome[]> {
    const att = await this.attached();
    const out = await timed(this.deps, 'primary', this.deps.store.commitBatch(att.target.pool, att.target.epoch, batch, castAtNow()));
    if (this.att === att) this.relay.noteAccepted(out.filter((o) => o.status === 'accepted').length);
    return out;
  }

  describe(): ReplicationInfo {
    return {
      mode: 'async',
      acknowledgedAfter: 'primary commit (the outbox relay ships the vote to the log right after)',
      replicasFed: true,
      ready: this.ready,
      ...(this.ready ? {} : { waitingFor: this.waitingFor }),
      atRisk: this.relay.atRisk(),
      outbox: this.relay.outboxVotes,
      log: { writer: this.writer.writer.toString(16), appended: this.writer.appended, lastError: this.relay.lastError ?? this.writer.lastError },
    };
  }
}
