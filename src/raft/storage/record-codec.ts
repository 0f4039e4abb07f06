// The binary records of a log segment.
//
//   record  = crc32 u32 | length u32 | payload (length bytes)
//   crc32   covers the length field and the payload, so a damaged length is
//           caught like damaged data
//   payload = kind u8 | body
//
//   entry      (kind 1): term u64 | index u64 | entry type u8 | data
//   hard state (kind 2): term u64 | commit u64 | vote length u16 (0xffff = none) | vote utf-8
//   log state  (kind 3): snapshot index u64 | snapshot term u64 | last index u64 | flags u8
//
// All integers little-endian; u64 holds a JavaScript safe integer (< 2^53).
// A log state says "the log is now the snapshot (index, term) followed by
// entries up to last index". Every segment starts with one (flag bit 0), and
// saving a snapshot appends one, so recovery knows where the log starts and
// whether a snapshot kept or replaced the entries after it.

import type { Entry, EntryType, HardState } from '../core/types.js';
import { crc32 } from './checksum.js';

export const RECORD_HEADER_BYTES = 8;

const KIND_ENTRY = 1;
const KIND_HARD_STATE = 2;
const KIND_LOG_STATE = 3;

const ENTRY_FIXED_BYTES = 1 + 8 + 8 + 1;
const HARD_STATE_FIXED_BYTES = 1 + 8 + 8 + 2;
const LOG_STATE_BYTES = 1 + 8 + 8 + 8 + 1;
const NO_VOTE = 0xffff;
const FLAG_SEGMENT_HEAD = 1;
const TWO_POW_32 = 0x1_0000_0000;

export interface LogState {
  snapshotIndex: number;
  snapshotTerm: number;
  /** Last index of the log at this point; equal to snapshotIndex when no entries follow the snapshot. */
  lastIndex: number;
  /** True for the first record of a segment. */
  segmentHead: boolean;
}

export type LogRecord =
  | { kind: 'entry'; entry: Entry }
  | { kind: 'hardState'; hardState: HardState }
  | { kind: 'logState'; state: LogState };

/** Size on disk of an entry record. */
export function entryRecordBytes(entry: Entry): number {
  return RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES + entry.data.length;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Encodes records into one reusable, growing buffer so that a batch of
 * entries becomes one write() call.
 */
export class RecordEncoder {
  private buffer = new Uint8Array(4096);
  private view = new DataView(this.buffer.buffer);
  private used = 0;

  get length(): number {
    return this.used;
  }

  /** The encoded bytes; valid until the next encode or clear. */
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.used);
  }

  clear(): void {
    this.used = 0;
    // One huge batch must not pin its buffer for the life of the node.
    if (this.buffer.length > 4 * 1024 * 1024) this.resize(4096);
  }

  entry(entry: Entry): void {
    const payload = ENTRY_FIXED_BYTES + entry.data.length;
    const at = this.begin(payload);
    const body = at + RECORD_HEADER_BYTES;
    this.buffer[body] = KIND_ENTRY;
    this.u64(body + 1, entry.term);
    this.u64(body + 9, entry.index);
    this.buffer[body + 17] = entry.type;
    this.buffer.set(entry.data, body + 18);
    this.finish(at, payload);
  }

  hardState(hs: HardState): void {
    const vote = hs.vote === null ? null : utf8Encoder.encode(hs.vote);
    if (vote !== null && vote.length >= NO_VOTE) throw new Error(`raft storage: vote "${hs.vote}" is too long`);
    const payload = HARD_STATE_FIXED_BYTES + (vote?.length ?? 0);
    const at = this.begin(payload);
    const body = at + RECORD_HEADER_BYTES;
    this.buffer[body] = KIND_HARD_STATE;
    this.u64(body + 1, hs.term);
    this.u64(body + 9, hs.commit);
    this.view.setUint16(body + 17, vote === null ? NO_VOTE : vote.length, true);
    if (vote !== null) this.buffer.set(vote, body + 19);
    this.finish(at, payload);
  }

  logState(state: LogState): void {
    const at = this.begin(LOG_STATE_BYTES);
    const body = at + RECORD_HEADER_BYTES;
    this.buffer[body] = KIND_LOG_STATE;
    this.u64(body + 1, state.snapshotIndex);
    this.u64(body + 9, state.snapshotTerm);
    this.u64(body + 17, state.lastIndex);
    this.buffer[body + 25] = state.segmentHead ? FLAG_SEGMENT_HEAD : 0;
    this.finish(at, LOG_STATE_BYTES);
  }

  private begin(payload: number): number {
    const needed = this.used + RECORD_HEADER_BYTES + payload;
    if (needed > this.buffer.length) this.resize(Math.max(needed, this.buffer.length * 2));
    return this.used;
  }

  private resize(size: number): void {
    const resized = new Uint8Array(size);
    resized.set(this.buffer.subarray(0, this.used));
    this.buffer = resized;
    this.view = new DataView(resized.buffer);
  }

  private finish(at: number, payload: number): void {
    this.view.setUint32(at + 4, payload, true);
    const end = at + RECORD_HEADER_BYTES + payload;
    this.view.setUint32(at, crc32(this.buffer.subarray(at + 4, end)), true);
    this.used = end;
  }

  private u64(offset: number, value: number): void {
    this.view.setUint32(offset, value % TWO_POW_32, true);
    this.view.setUint32(offset + 4, Math.floor(value / TWO_POW_32), true);
  }
}

export type DecodeResult =
  | { status: 'ok'; record: LogRecord; next: number }
  /** No bytes left: a clean end. */
  | { status: 'end' }
  /** The header or payload runs past the end of the bytes, or the checksum does not match. */
  | { status: 'bad'; reason: string }
  /** The checksum matches but the payload makes no sense: written by a bug or another version, never by a crash. */
  | { status: 'invalid'; reason: string };

/** Reads the records of one segment's bytes. */
export class RecordDecoder {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(bytes: Uint8Array) {
    this.bytes = plainBytes(bytes);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /**
   * Decodes the record at `offset`. Entry data is a view into the segment's
   * bytes, not a copy: recovery of small entries runs about twice as fast,
   * at the price that a segment's buffer stays in memory while any entry
   * read from it does (entries are compacted about when segments are).
   */
  decode(offset: number): DecodeResult {
    const { bytes, view } = this;
    const remaining = bytes.length - offset;
    if (remaining === 0) return { status: 'end' };
    if (remaining < RECORD_HEADER_BYTES) return { status: 'bad', reason: `${remaining} bytes left, too few for a record header` };
    const length = view.getUint32(offset + 4, true);
    if (length === 0) return { status: 'bad', reason: 'record length is zero' };
    if (length > remaining - RECORD_HEADER_BYTES) {
      return { status: 'bad', reason: `record length ${length} runs past the end (${remaining - RECORD_HEADER_BYTES} bytes left)` };
    }
    const end = offset + RECORD_HEADER_BYTES + length;
    if (view.getUint32(offset, true) !== crc32(bytes.subarray(offset + 4, end))) return { status: 'bad', reason: 'checksum mismatch' };
    const body = offset + RECORD_HEADER_BYTES;
    switch (bytes[body]) {
      case KIND_ENTRY: {
        if (length < ENTRY_FIXED_BYTES) return { status: 'invalid', reason: `entry record of ${length} bytes` };
        const entry: Entry = {
          term: this.u64(body + 1),
          index: this.u64(body + 9),
          type: bytes[body + 17] as EntryType,
          data: bytes.subarray(body + 18, end),
        };
        return { status: 'ok', record: { kind: 'entry', entry }, next: end };
      }
      case KIND_HARD_STATE: {
        if (length < HARD_STATE_FIXED_BYTES) return { status: 'invalid', reason: `hard state record of ${length} bytes` };
        const voteLength = view.getUint16(body + 17, true);
        let vote: string | null = null;
        if (voteLength !== NO_VOTE) {
          if (HARD_STATE_FIXED_BYTES + voteLength !== length) return { status: 'invalid', reason: 'hard state vote length' };
          try {
            vote = utf8Decoder.decode(bytes.subarray(body + 19, end));
          } catch {
            return { status: 'invalid', reason: 'hard state vote is not UTF-8' };
          }
        } else if (length !== HARD_STATE_FIXED_BYTES) {
          return { status: 'invalid', reason: 'hard state record length' };
        }
        const hardState: HardState = { term: this.u64(body + 1), vote, commit: this.u64(body + 9) };
        return { status: 'ok', record: { kind: 'hardState', hardState }, next: end };
      }
      case KIND_LOG_STATE: {
        if (length !== LOG_STATE_BYTES) return { status: 'invalid', reason: `log state record of ${length} bytes` };
        const state: LogState = {
          snapshotIndex: this.u64(body + 1),
          snapshotTerm: this.u64(body + 9),
          lastIndex: this.u64(body + 17),
          segmentHead: (bytes[body + 25]! & FLAG_SEGMENT_HEAD) !== 0,
        };
        return { status: 'ok', record: { kind: 'logState', state }, next: end };
      }
      default:
        return { status: 'invalid', reason: `unknown record kind ${bytes[body]}` };
    }
  }

  /**
   * Offset of the first place after `from` where a record with a matching
   * checksum starts, or -1. Recovery uses it to tell a torn tail (nothing
   * valid after the bad record) from damage in the middle of the log (valid
   * records follow, so cutting there could drop acknowledged data).
   */
  findValidRecordAfter(from: number): number {
    const { bytes, view } = this;
    for (let at = from + 1; at + RECORD_HEADER_BYTES < bytes.length; at++) {
      const length = view.getUint32(at + 4, true);
      if (length === 0 || length > bytes.length - at - RECORD_HEADER_BYTES) continue;
      const end = at + RECORD_HEADER_BYTES + length;
      if (view.getUint32(at, true) === crc32(bytes.subarray(at + 4, end))) return at;
    }
    return -1;
  }

  private u64(at: number): number {
    return this.view.getUint32(at, true) + this.view.getUint32(at + 4, true) * TWO_POW_32;
  }
}

/**
 * A plain Uint8Array over the same memory. node:fs hands out Buffers, whose
 * slice() is a view rather than a copy and whose views are Buffers too; the
 * storage hands out plain Uint8Arrays whatever the file system returns.
 */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
