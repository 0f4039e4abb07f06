// How a batch of votes is made durable before the voters are answered: the
// replication mode's acknowledgement rule (DESIGN §2).
//
//   async  primary commit (vote + outbox row, one transaction); the outbox
//          relay ships it to the shard's log partition (async-path.ts)
//   log    primary commit AND log append, in parallel; answer when both are
//          done (log-path.ts)
//   sync   as log, then wait until every replica has applied the batch's
//          last offset (log-path.ts; without brokers, sync-direct-path.ts
//          writes the replicas itself)
//
// A path is attached to one primary at one epoch at a time. The shard service
// (shard-node.ts) detaches it the moment the shard record names another
// primary or epoch, switches its connection pool, and attaches it again;
// attach() does what must happen before the first vote of the new attachment
// (the barrier in the vote log, the primary's replay up to it, the outbox
// left over by earlier attachments) and resolves once the primary takes
// writes. Meanwhile commit() waits (a bounded time) for the attachment to be
// ready, so votes arriving during a failover wait in the service's queue
// instead of failing.
import type { ShardRecord } from '../../core/shard-records.js';
import type { ReplicationMode } from '../../core/topology.js';
import type { Logger } from '../common/logger.js';
import { readMeta } from '../postgres/pg-schema.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';
import type { PrimaryTarget } from './primary-connection.js';
import type { VoteStore } from './vote-store.js';
import { sleep, type VoteLogWriter } from './vote-log.js';

export interface Attachment {
  target: PrimaryTarget;
  record: ShardRecord;
  /** Aborts when the attachment ends (detach). */
  signal: AbortSignal;
}

export interface ReplicationInfo {
  mode: ReplicationMode;
  acknowledgedAfter: string;
  replicasFed: boolean;
  /** Ready to write at the current attachment. */
  ready: boolean;
  /** What an attachment that is not ready waits for. */
  waitingFor?: string;
  /** async: votes committed on the primary and not yet in the vote log. */
  atRisk: number;
  /** Votes in the primary's outbox at the last count (one row per batch holds them). */
  outbox: number | null;
  log?: { writer: string; appended: number; lastError: string | null };
  replicas?: { node: string; available: boolean; nextOffset: number | null; error?: string }[];
  note?: string;
}

export interface ReplicationPath {
  readonly mode: ReplicationMode;
  /** Make the batch durable as the mode requires; one outcome per vote, in order. */
  commit(batch: PendingVote[], primary: PrimaryTarget): Promise<VoteOutcome[]>;
  /** Prepare writing to att.target; resolves when ready (or when att.signal aborts). */
  attach(att: Attachment): Promise<void>;
  /** The current attachment ended: stop its work; its batches in flight fail. */
  detach(): void;
  /** The record changed, same primary and epoch (replicas came or went). */
  updateRecord(record: ShardRecord): void;
  /** What /health tells about replication. */
  describe(): ReplicationInfo;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface PathDeps {
  store: VoteStore;
  log: Logger;
  node: string;
  shard: number;
  partition: number;
  /** The vote log writer; null when the cluster has no brokers (sync mode only). */
  writer: VoteLogWriter | null;
  /** Called with the async at-risk count of an attachment that ended (votes possibly lost with its primary). */
  onAttachmentEnded?: (info: { epoch: number; primary: string; atRisk: number }) => void;
  /** Observes how long each step of a batch took (metrics). */
  observeStep?: (step: 'primary' | 'log' | 'replicas', seconds: number) => void;
}

/** `p`, timed into deps.observeStep when it succeeds. */
export function timed<T>(deps: PathDeps, step: 'primary' | 'log' | 'replicas', p: Promise<T>): Promise<T> {
  if (!deps.observeStep) return p;
  const t0 = performance.now();
  return p.then((v) => {
    deps.observeStep!(step, (performance.now() - t0) / 1000);
    return v;
  });
}

/** The service cannot write yet (attaching to a primary); nothing was stored. */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** How long a vote waits for an attachment to become ready before it is answered 503. */
export const READY_WAIT_MS = 5_000;

/** Common attachment bookkeeping: readiness, the bounded wait for it. */
export abstract class AttachedPath implements ReplicationPath {
  abstract readonly mode: ReplicationMode;
  protected att: Attachment | null = null;
  private readyAtt: Attachment | null = null;
  private readyWaiters: (() => void)[] = [];
  protected waitingFor = 'a primary (the shard record from the managers)';

  constructor(protected readonly deps: PathDeps) {}

  abstract commit(batch: PendingVote[], primary: PrimaryTarget): Promise<VoteOutcome[]>;
  protected abstract prepare(att: Attachment): Promise<void>;
  abstract describe(): ReplicationInfo;

  get ready(): boolean {
    return this.readyAtt !== null && this.readyAtt === this.att && !this.att.signal.aborted;
  }

  async attach(att: Attachment): Promise<void> {
    this.att = att;
    this.readyAtt = null;
    try {
      await this.prepare(att);
    } catch (e) {
      if (att.signal.aborted) return;
      throw e;
    }
    if (att.signal.aborted || this.att !== att) return;
    this.readyAtt = att;
    this.waitingFor = '';
    const ws = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of ws) w();
    this.deps.log.info({ primary: att.target.node, epoch: att.target.epoch, mode: this.mode }, 'replication attached: taking votes');
  }

  detach(): void {
    this.readyAtt = null;
    this.att = null;
  }

  updateRecord(_record: ShardRecord): void {}

  /** The ready attachment, waiting up to READY_WAIT_MS for one. */
  protected async attached(): Promise<Attachment> {
    const deadline = Date.now() + READY_WAIT_MS;
    while (!this.ready) {
      const left = deadline - Date.now();
      if (left <= 0) throw new NotReadyError(`the shard service is not ready to write: waiting for ${this.waitingFor || 'the primary'}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.readyWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.readyAtt!;
  }

  /** Poll until the primary's fence says primary at the attachment's epoch. */
  protected async waitWritable(att: Attachment): Promise<void> {
    this.waitingFor = `${att.target.node} to take writes at epoch ${att.target.epoch}`;
    for (let i = 0; !att.signal.aborted; i++) {
      try {
        const meta = await readMeta(att.target.pool);
        if (meta.role === 'primary' && Number(meta.epoch) === att.target.epoch) return;
        this.waitingFor = `${att.target.node} to take writes at epoch ${att.target.epoch} (it is ${meta.role ?? 'unassigned'} at epoch ${meta.epoch ?? 'none'})`;
      } catch (e) {
        this.waitingFor = `${att.target.node} to answer (${(e as Error).message})`;
      }
      await sleep(Math.min(20 + i * 10, 200), att.signal);
    }
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {
    this.detach();
  }
}
