// The messages of the vote log (topic "votes", partition shard-1) and the one
// rule every copy uses to apply them. Pure: no I/O.
//
// Two kinds of message, little fixed-size binary records (no JSON per vote):
//
//   vote     u8 1 | u8 0 | u16 choice | u32 epoch | u32 writer | f64 voterId | f64 castAtUs   (28 bytes)
//            (castAtUs: microseconds since 1970, an integer, exact in an f64)
//   barrier  u8 2 | u8 0 | u16 0      | u32 epoch | u32 writer | f64 atMs                      (20 bytes)
//
// `writer` is a random non-zero number a shard service picks at start (one per
// process); `epoch` is the shard's epoch the writer was writing under. A
// writer appends a barrier (epoch, writer) every time it (re)attaches to a
// primary (its start, every failover), before any vote of its own.
//
// The apply rule (LogFilter): a vote entry counts only if its (epoch, writer)
// equals the latest barrier's before it in the log. So entries of a deposed
// epoch or of a dead writer that land late - after a newer barrier, because
// their request was still in flight - count nowhere. Such entries were never
// acknowledged (a writer acknowledges a vote only once its append returned,
// and it appends its barrier only after it stopped acknowledging the old
// epoch), and every copy skips them alike, because every copy applies the same
// log in the same order. Of the entries that count, the first one per voter
// wins (INSERT ... ON CONFLICT DO NOTHING), which is the primary's decision:
// same-voter votes are serialized in the shard service.

export const VOTE_ENTRY = 1;
export const BARRIER_ENTRY = 2;
const VOTE_BYTES = 28;
const BARRIER_BYTES = 20;

export interface VoteEntry {
  kind: 'vote';
  voterId: number;
  choice: number;
  castAtUs: number;
  epoch: number;
  writer: number;
}

export interface BarrierEntry {
  kind: 'barrier';
  epoch: number;
  writer: number;
  atMs: number;
}

export type LogEntry = VoteEntry | BarrierEntry;

export function encodeVote(v: Omit<VoteEntry, 'kind'>): Uint8Array {
  const out = new Uint8Array(VOTE_BYTES);
  const d = new DataView(out.buffer);
  d.setUint8(0, VOTE_ENTRY);
  d.setUint16(2, v.choice);
  d.setUint32(4, v.epoch);
  d.setUint32(8, v.writer);
  d.setFloat64(12, v.voterId);
  d.setFloat64(20, v.castAtUs);
  return out;
}

export function encodeBarrier(b: Omit<BarrierEntry, 'kind'>): Uint8Array {
  const out = new Uint8Array(BARRIER_BYTES);
  const d = new DataView(out.buffer);
  d.setUint8(0, BARRIER_ENTRY);
  d.setUint32(4, b.epoch);
  d.setUint32(8, b.writer);
  d.setFloat64(12, b.atMs);
  return out;
}

/** The entry in a message, or null for anything else (which every copy ignores alike). */
export function decodeEntry(bytes: Uint8Array): LogEntry | null {
  if (bytes.byteLength < 1) return null;
  const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = d.getUint8(0);
  if (kind === VOTE_ENTRY && bytes.byteLength === VOTE_BYTES) {
    return { kind: 'vote', choice: d.getUint16(2), epoch: d.getUint32(4), writer: d.getUint32(8), voterId: d.getFloat64(12), castAtUs: d.getFloat64(20) };
  }
  if (kind === BARRIER_ENTRY && bytes.byteLength === BARRIER_BYTES) {
    return { kind: 'barrier', epoch: d.getUint32(4), writer: d.getUint32(8), atMs: d.getFloat64(12) };
  }
  return null;
}

/** A random writer id: 1 .. 2^32-1. */
export function newWriterId(): number {
  for (;;) {
    const w = Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
    if (w !== 0) return w;
  }
}

/** The latest barrier seen, as a copy stores it (applied.barrier_epoch / barrier_writer). */
export interface BarrierState {
  epoch: number;
  writer: number;
}

export interface ApplyPlan {
  /** Votes to insert, first per voter, in log order. */
  votes: { voterId: number; choice: number; castAtUs: number }[];
  /** Vote entries skipped (stale epoch or writer, malformed). */
  skipped: number;
  /** The barrier state after these entries. */
  state: BarrierState;
  /** Barriers met, in order (for replay waits). */
  barriers: BarrierState[];
}

/**
 * Which of `messages` (consecutive, in log order) a copy applies, given the
 * barrier state before them. Deterministic: every copy gets the same answer.
 */
export function planApply(messages: readonly Uint8Array[], before: BarrierState): ApplyPlan {
  let state = { ...before };
  const votes: ApplyPlan['votes'] = [];
  const seen = new Set<number>();
  const barriers: BarrierState[] = [];
  let skipped = 0;
  for (const m of messages) {
    const e = decodeEntry(m);
    if (!e) {
      skipped++;
      continue;
    }
    if (e.kind === 'barrier') {
      // A barrier never moves the epoch back (a late one from a deposed writer is ignored).
      if (e.epoch >= state.epoch) {
        state = { epoch: e.epoch, writer: e.writer };
        barriers.push({ ...state });
      }
      continue;
    }
    if (e.epoch !== state.epoch || e.writer !== state.writer || !Number.isSafeInteger(e.voterId) || e.voterId < 0 || e.choice < 1) {
      skipped++;
      continue;
    }
    if (seen.has(e.voterId)) continue;
    seen.add(e.voterId);
    votes.push({ voterId: e.voterId, choice: e.choice, castAtUs: e.castAtUs });
  }
  return { votes, skipped, state, barriers };
}
