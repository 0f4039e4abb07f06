// The compact encoding of a batch of message values, used on the wire
// (append request bodies, fetch reply bodies) and inside the Raft log:
//
//   repeated: u32 length (big-endian) | length bytes
//
// No JSON per message on the hot path: a batch is parsed by walking the
// length prefixes, and values are views into the received buffer.

export class FrameError extends Error {
  constructor(
    message: string,
    /** 'too large' maps to HTTP 413, 'malformed' to 400. */
    readonly kind: 'malformed' | 'too large' = 'malformed',
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

/** Bytes a batch takes when framed. */
export function framedSize(values: readonly Uint8Array[]): number {
  let n = 0;
  for (const v of values) n += 4 + v.byteLength;
  return n;
}

export function writeFrames(values: readonly Uint8Array[], out: Uint8Array, at: number): number {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let pos = at;
  for (const v of values) {
    view.setUint32(pos, v.byteLength);
    out.set(v, pos + 4);
    pos += 4 + v.byteLength;
  }
  return pos;
}

export function encodeFrames(values: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(framedSize(values));
  writeFrames(values, out, 0);
  return out;
}

/**
 * Split a framed batch into views (no copy). Throws FrameError on a
 * truncated frame or a value above maxValueBytes.
 */
export function decodeFrames(buf: Uint8Array, limits: { maxValueBytes?: number; maxCount?: number } = {}): Uint8Array[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < buf.byteLength) {
    if (pos + 4 > buf.byteLength) throw new FrameError(`truncated frame header at byte ${pos} of ${buf.byteLength}`);
    const len = view.getUint32(pos);
    if (limits.maxValueBytes !== undefined && len > limits.maxValueBytes) {
      throw new FrameError(`message ${out.length} is ${len} bytes; the limit is ${limits.maxValueBytes}`, 'too large');
    }
    if (pos + 4 + len > buf.byteLength) throw new FrameError(`message ${out.length} claims ${len} bytes but only ${buf.byteLength - pos - 4} follow`);
    out.push(buf.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len;
    if (limits.maxCount !== undefined && out.length > limits.maxCount) throw new FrameError(`more than ${limits.maxCount} messages in one batch`, 'too large');
  }
  return out;
}
