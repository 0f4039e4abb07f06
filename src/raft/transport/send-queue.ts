// The messages waiting to be written to one peer, already encoded into batch
// frames. Messages are encoded when queued (not when flushed), so the caller
// may reuse its objects right after `send` and the queue's byte count is
// exact. A flush hands all finished frames to the socket in one write.
import type { Message } from '../core/types.js';
import { BATCH_HEADER_BYTES, FRAME_LENGTH_BYTES, FrameKind, writeEnvelope } from './codec.js';

interface OpenFrame {
  buf: Buffer;
  /** Bytes written so far, header included. */
  pos: number;
  count: number;
}

export interface DrainedFrames {
  frames: Buffer[];
  messages: number;
  bytes: number;
}

const INITIAL_FRAME_CAPACITY = 4096;

export class SendQueue {
  private open: OpenFrame | undefined;
  private finished: Buffer[] = [];
  /** Sized after the last frame, so that a steady stream does not regrow every frame from small. */
  private nextFrameCapacity = INITIAL_FRAME_CAPACITY;
  private queuedBytes = 0;
  private queuedMessages = 0;
  /** Frames are closed once they reach this many bytes (a single larger message still gets its own frame). */
  private readonly targetFrameBytes: number;
  /** The largest envelope that fits a frame the receiver accepts. */
  readonly maxEnvelopeBytes: number;

  constructor(maxFrameBytes: number, targetFrameBytes: number) {
    this.maxEnvelopeBytes = maxFrameBytes - (BATCH_HEADER_BYTES - FRAME_LENGTH_BYTES);
    this.targetFrameBytes = Math.max(BATCH_HEADER_BYTES + 1, Math.min(targetFrameBytes, maxFrameBytes + FRAME_LENGTH_BYTES));
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  get messages(): number {
    return this.queuedMessages;
  }

  /** Appends a message whose size came from measureEnvelope. */
  push(group: string, msg: Message, size: number): void {
    if (size > this.maxEnvelopeBytes) {
      throw new RangeError(`message of ${size} bytes exceeds the frame limit (${this.maxEnvelopeBytes} bytes)`);
    }
    let f = this.open;
    if (f !== undefined && f.count > 0 && f.pos + size > this.targetFrameBytes) {
      this.finishOpenFrame();
      f = undefined;
    }
    if (f === undefined) {
      const capacity = Math.max(BATCH_HEADER_BYTES + size, this.nextFrameCapacity);
      f = { buf: Buffer.allocUnsafe(capacity), pos: BATCH_HEADER_BYTES, count: 0 };
      this.open = f;
    } else if (f.pos + size > f.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(f.pos + size, Math.min(f.buf.length * 2, this.targetFrameBytes)));
      f.buf.copy(grown, 0, 0, f.pos);
      f.buf = grown;
    }
    const end = writeEnvelope(f.buf, f.pos, group, msg);
    if (end !== f.pos + size) throw new Error(`raft codec: measured ${size} bytes but wrote ${end - f.pos}`);
    f.pos = end;
    f.count++;
    this.queuedBytes += size;
    this.queuedMessages++;
  }

  /** Takes every queued message as complete frames, leaving the queue empty. */
  drain(): DrainedFrames {
    if (this.open !== undefined && this.open.count > 0) this.finishOpenFrame();
    const out: DrainedFrames = { frames: this.finished, messages: this.queuedMessages, bytes: 0 };
    for (const f of out.frames) out.bytes += f.length;
    this.finished = [];
    this.queuedBytes = 0;
    this.queuedMessages = 0;
    return out;
  }

  /** Discards everything queued; returns how many messages were discarded. */
  clear(): number {
    const dropped = this.queuedMessages;
    this.open = undefined;
    this.finished = [];
    this.queuedBytes = 0;
    this.queuedMessages = 0;
    return dropped;
  }

  private finishOpenFrame(): void {
    const f = this.open!;
    f.buf.writeUInt32BE(f.pos - FRAME_LENGTH_BYTES, 0);
    f.buf[FRAME_LENGTH_BYTES] = FrameKind.Batch;
    f.buf.writeUInt32BE(f.count, FRAME_LENGTH_BYTES + 1);
    this.finished.push(f.buf.subarray(0, f.pos));
    this.nextFrameCapacity = Math.min(this.targetFrameBytes, Math.max(INITIAL_FRAME_CAPACITY, f.pos));
    this.open = undefined;
  }
}
