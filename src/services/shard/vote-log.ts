// The shard service's side of the vote log: its shard's partition of the
// topic "votes" on the brokers, written through BrokerClient (appends are
// committed on RF brokers and fsynced; retries are idempotent per producer id
// and sequence).
//
// Producer ids name the writer (a random number per service process, see
// vote-log-codec.ts) and the attachment (one per primary/epoch the service
// attaches to), so a sequence number is never reused by a later attachment:
// the broker would answer a reused one with the old offsets and store nothing.
import { BrokerClient, BrokerRequestError } from '../../client/broker-client.js';
import { VOTE_TOPIC } from '../../core/shard-records.js';
import type { Logger } from '../common/logger.js';
import { encodeBarrier, newWriterId } from './vote-log-codec.js';

export interface Offsets {
  firstOffset: number;
  lastOffset: number;
}

/** The append did not succeed in time; the votes may or may not be in the log. */
export class LogUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LogUnavailableError';
  }
}

/** The attachment this work belonged to ended (a new primary or epoch). */
export class DetachedError extends Error {
  constructor(message = 'the shard changed primary or epoch while this batch was in flight') {
    super(message);
    this.name = 'DetachedError';
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `p`, or DetachedError as soon as `signal` aborts (p keeps running). */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new DetachedError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new DetachedError());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export class VoteLogWriter {
  /** This process's writer id (in every entry it appends). */
  readonly writer = newWriterId();
  private attachment = 0;
  private topicReady = false;
  lastError: string | null = null;
  appended = 0;

  constructor(
    readonly brokers: BrokerClient,
    readonly partition: number,
    /** Partitions of the topic = the topology's shard count. */
    private readonly partitions: number,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /** Start a new attachment: later producer ids differ from earlier ones. */
  nextAttachment(): number {
    return ++this.attachment;
  }

  /** Producer id for votes ("v") or relayed outbox rows ("r") of the current attachment. */
  producer(kind: 'v' | 'r'): string {
    return `${this.node}.${this.writer.toString(16)}.${kind}${this.attachment}`;
  }

  /** Create the topic if needed (idempotent; the same partition count always). */
  async ensureTopic(): Promise<void> {
    if (this.topicReady) return;
    await this.brokers.createTopic(VOTE_TOPIC, { partitions: this.partitions });
    this.topicReady = true;
  }

  /**
   * Append `values` as one batch under (producer, seq), retrying (the same
   * producer and seq, so at most once in the log) until it succeeds, the
   * deadline passes (LogUnavailableError: outcome unknown) or the signal
   * aborts (DetachedError).
   */
  async append(values: Uint8Array[], producerId: string, seq: number, o: { signal: AbortSignal; deadline: number }): Promise<Offsets> {
    for (let attempt = 0; ; attempt++) {
      if (o.signal.aborted) throw new DetachedError();
      try {
        if (!this.topicReady) await untilAborted(this.ensureTopic(), o.signal);
        const r = await untilAborted(this.brokers.append(VOTE_TOPIC, this.partition, values, { producerId, seq }), o.signal);
        this.lastError = null;
        this.appended += values.length;
        return r;
      } catch (e) {
        if (e instanceof DetachedError) throw e;
        this.lastError = (e as Error).message;
        if (e instanceof BrokerRequestError) {
          if (e.status === 404) this.topicReady = false;
          else if (e.status !== 429 && e.status < 500) throw new LogUnavailableError(`the vote log refused the append: ${e.message}`);
        }
        if (Date.now() >= o.deadline) throw new LogUnavailableError(`the vote log did not take the append in time: ${this.lastError}`);
        if (attempt % 10 === 0) this.log.warn({ err: this.lastError, attempt }, 'vote log append failed; retrying');
        await sleep(Math.min(25 * 2 ** Math.min(attempt, 5), 500), o.signal);
      }
    }
  }

  /** Append this writer's barrier for `epoch`; returns its offset. */
  async barrier(epoch: number, seq: number, signal: AbortSignal): Promise<number> {
    const r = await this.append([encodeBarrier({ epoch, writer: this.writer, atMs: Date.now() })], this.producer('v'), seq, { signal, deadline: Infinity });
    return r.lastOffset;
  }
}
