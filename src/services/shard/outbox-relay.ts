// The outbox relay: ships outbox rows of the current primary (votes committed
// there, one row per batch, see vote-store.ts) to the vote log, each row's
// votes whole within one append and with the row's cast time. Exactly one
// party deletes outbox rows: the primary's own applier, when it meets a row's
// first vote with that cast time in the log (postgres/replica-applier.ts).
// The relay only reads, and keeps an in-memory cursor so that it does not send a row twice; a new attachment
// (service restart, failover) starts from the beginning again, which is
// harmless: a vote shipped twice is the same first vote of its voter.
//
// The cursor is (xid, id), over rows whose writing transaction is older than
// the oldest transaction still running (pg_snapshot_xmin): those rows are all
// committed, and no row can appear below them later. A cursor on the id alone
// would skip rows: ids are handed out at insert, and with several batches in
// flight a lower id often commits after a higher one.
//
//   continuous (async mode): everything above the cursor, as soon as it is
//     committed (the commit path kicks the relay), about 2,000 votes per
//     append (whole rows: one row alone may hold more);
//     what is in the outbox and not yet shipped is the "votes at risk".
//   leftovers (log and sync modes): the vote path appends every vote itself;
//     rows can only stay behind when an append's outcome stayed unknown for
//     a process that died, or when the applier met a vote in the log before
//     the primary's transaction that wrote its outbox row had committed. At
//     attach the whole outbox is shipped once (flushAll, before any new vote);
//     afterwards rows that survived one round (2 s) are shipped.
//
// Every shipped entry carries the attachment's (epoch, writer), so it counts
// under the barrier the service appended for that attachment.
import type pg from 'pg';
import { OUTBOX_VOTES_SQL } from '../postgres/pg-schema.js';
import type { Logger } from '../common/logger.js';
import { encodeVote } from './vote-log-codec.js';
import { sleep, untilAborted, type VoteLogWriter } from './vote-log.js';

export type RelayMode = 'continuous' | 'leftovers';

interface OutboxRow {
  id: number;
  xid_text: string;
  cast_us: number;
  voter_ids: number[];
  choices: number[];
}

interface Cursor {
  xid: string;
  id: number;
}

const START: Cursor = { xid: '0', id: 0 };

export interface RelayAttachment {
  pool: pg.Pool;
  epoch: number;
  signal: AbortSignal;
  /** Resolves once this attachment's barrier is in the log (entries before it would not count). */
  barrier: () => Promise<void>;
}

/** Votes per relay append (whole outbox rows; a row with more goes alone). */
const APPEND_VOTES = 2_000;
/** Outbox rows read per round. */
const READ_ROWS = 64;
const LEFTOVER_ROUND_MS = 2_000;
const COUNT_EVERY_MS = 1_000;

export class OutboxRelay {
  private att: RelayAttachment | null = null;
  private cursor: Cursor = START;
  private wake: (() => void) | null = null;
  /** Votes in the outbox when this attachment started (none shipped yet then). */
  private backlogAtAttach = 0;
  /** Votes committed on the primary (in outbox rows) during this attachment. */
  private accepted = 0;
  /** Votes shipped during this attachment. */
  private shipped = 0;
  shippedTotal = 0;
  /** Sequence numbers of relay appends (the producer id changes with every attachment). */
  private relaySeq = 0;
  /** Votes in the outbox at the last count (null: not counted yet). */
  outboxVotes: number | null = null;
  lastError: string | null = null;

  constructor(
    private readonly mode: RelayMode,
    private readonly writer: VoteLogWriter,
    private readonly log: Logger,
  ) {}

  /**
   * Votes committed on the current primary but not yet in the vote log (async
   * mode): what losing that primary's disk now would lose.
   */
  atRisk(): number {
    return Math.max(0, this.backlogAtAttach + this.accepted - this.shipped);
  }

  /** The counters behind atRisk (for logs). */
  counters(): { backlogAtAttach: number; accepted: number; shipped: number } {
    return { backlogAtAttach: this.backlogAtAttach, accepted: this.accepted, shipped: this.shipped };
  }

  /** The commit path stored `n` new votes (in the outbox too). */
  noteAccepted(n: number): void {
    if (n <= 0) return;
    this.accepted += n;
    if (this.mode === 'continuous') this.kick();
  }

  kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Start relaying from a new primary/epoch; the previous attachment's loop stops with its signal. */
  async attach(att: RelayAttachment): Promise<void> {
    this.att = att;
    this.cursor = START;
    this.accepted = 0;
    this.shipped = 0;
    this.backlogAtAttach = 0;
    for (;;) {
      if (att.signal.aborted) return;
      try {
        this.backlogAtAttach = await this.count(att);
        break;
      } catch (e) {
        this.lastError = `cannot read the outbox: ${(e as Error).message}`;
        await sleep(500, att.signal);
      }
    }
    if (this.mode === 'leftovers') {
      // Everything left over by earlier attachments goes before any new vote.
      await this.flushAll(att);
    }
    void this.loop(att);
  }

  private async count(att: RelayAttachment): Promise<number> {
    const r = await att.pool.query<{ n: number }>(OUTBOX_VOTES_SQL);
    this.outboxVotes = r.rows[0]?.n ?? 0;
    return this.outboxVotes;
  }

  /** Ship every row above the cursor now (retrying until it is done or the attachment ends). */
  async flushAll(att: RelayAttachment): Promise<void> {
    await att.barrier();
    for (;;) {
      if (att.signal.aborted) return;
      try {
        if (!(await this.shipRound(att, null)).more) return;
      } catch (e) {
        if (att.signal.aborted) return;
        this.lastError = (e as Error).message;
        await sleep(200, att.signal);
      }
    }
  }

  private async loop(att: RelayAttachment): Promise<void> {
    let lastCount = 0;
    let leftoverLimit: string | null = null;
    let barrierDone = false;
    while (!att.signal.aborted && this.att === att) {
      try {
        if (!barrierDone) {
          await att.barrier();
          barrierDone = true;
        }
        if (Date.now() - lastCount >= COUNT_EVERY_MS) {
          lastCount = Date.now();
          await this.count(att);
        }
        if (this.mode === 'continuous') {
          const r = await this.shipRound(att, null);
          if (r.votes === 0) await this.idle(att, 100);
        } else {
          // Ship only rows of transactions that had ended a round ago: fresher
          // ones are normally deleted by the primary's applier within
          // milliseconds of their commit.
          if (leftoverLimit !== null) while ((await this.shipRound(att, leftoverLimit)).more);
          const r = await att.pool.query<{ x: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x');
          leftoverLimit = r.rows[0]?.x ?? null;
          await sleep(LEFTOVER_ROUND_MS, att.signal);
        }
        this.lastError = null;
      } catch (e) {
        if (att.signal.aborted) return;
        this.lastError = (e as Error).message;
        this.log.warn({ err: this.lastError }, 'outbox relay round failed; retrying');
        await sleep(500, att.signal);
      }
    }
  }

  private idle(att: RelayAttachment, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const onAbort = () => done();
      att.signal.addEventListener('abort', onAbort, { once: true });
      this.wake = done;
      function done() {
        clearTimeout(t);
        att.signal.removeEventListener('abort', onAbort);
        resolve();
      }
    });
  }

  /**
   * Ship committed rows above the cursor (of transactions older than
   * `xidBelow` when given), about APPEND_VOTES votes in one append; `more`:
   * rows above the new cursor may be waiting.
   */
  private async shipRound(att: RelayAttachment, xidBelow: string | null): Promise<{ votes: number; more: boolean }> {
    const r = await untilAborted(
      att.pool.query<OutboxRow>(
        // (the output column is named xid_text: ORDER BY xid would sort by an output column named xid, as text)
        `SELECT id, xid::text AS xid_text, cast_us, voter_ids, choices
         FROM outbox
         WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) AND (xid, id) > ($1::xid8, $2::bigint)
               ${xidBelow !== null ? 'AND xid < $4::xid8' : ''}
         ORDER BY xid, id LIMIT $3`,
        xidBelow !== null ? [this.cursor.xid, this.cursor.id, READ_ROWS, xidBelow] : [this.cursor.xid, this.cursor.id, READ_ROWS],
      ),
      att.signal,
    );
    const rows: OutboxRow[] = [];
    let votes = 0;
    for (const row of r.rows) {
      if (rows.length > 0 && votes + row.voter_ids.length > APPEND_VOTES) break;
      rows.push(row);
      votes += row.voter_ids.length;
    }
    if (rows.length === 0) return { votes: 0, more: false };
    const values: Uint8Array[] = [];
    for (const row of rows) {
      row.voter_ids.forEach((voterId, k) =>
        values.push(encodeVote({ voterId, choice: Number(row.choices[k]), castAtUs: row.cast_us, epoch: att.epoch, writer: this.writer.writer })),
      );
    }
    const lastRow = rows[rows.length - 1]!;
    await this.writer.append(values, this.writer.producer('r'), this.relaySeq++, { signal: att.signal, deadline: Infinity });
    if (this.att === att) {
      this.cursor = { xid: lastRow.xid_text, id: lastRow.id };
      this.shipped += votes;
    }
    this.shippedTotal += votes;
    return { votes, more: rows.length < r.rows.length || r.rows.length === READ_ROWS };
  }
}
