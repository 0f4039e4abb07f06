// Cuts a TCP byte stream into length-prefixed frames.
//
// The length is checked as soon as its four bytes arrive, so an oversized or
// garbage length is refused before any of the frame is buffered.
import { CodecError, FRAME_LENGTH_BYTES, type Frame } from './codec.js';

export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. Throws CodecError on a bad length. */
  next(): Frame | undefined {
    if (this.buffered < FRAME_LENGTH_BYTES) return undefined;
    const length = this.peekLength();
    if (length === 0) throw new CodecError('bad frame: length 0');
    if (length > this.maxFrameBytes) {
      throw new CodecError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes} bytes`);
    }
    if (this.buffered < FRAME_LENGTH_BYTES + length) return undefined;
    this.consume(FRAME_LENGTH_BYTES);
    const payload = this.consume(length);
    return { kind: payload[0]!, body: payload.subarray(1) };
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= FRAME_LENGTH_BYTES) return first.readUInt32BE(0);
    const head = Buffer.allocUnsafe(FRAME_LENGTH_BYTES);
    let filled = 0;
    for (const c of this.chunks) {
      const n = Math.min(c.length, FRAME_LENGTH_BYTES - filled);
      c.copy(head, filled, 0, n);
      filled += n;
      if (filled === FRAME_LENGTH_BYTES) break;
    }
    return head.readUInt32BE(0);
  }

  /** Removes n buffered bytes (n <= buffered); no copy when they sit in one chunk. */
  private consume(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, take);
      filled += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    return out;
  }
}
