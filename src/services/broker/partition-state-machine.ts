// The replicated state of one partition (one Raft group `t/<topic>/<partition>`):
//
// - messages: dense offsets from 0; the value of offset i is messages[i];
// - consumer offsets: the next offset each consumer (or consumer group,
//   named "group:<name>") will dequeue, plus the last dequeue's request id
//   and range so that a retried dequeue returns the same messages again
//   instead of skipping them (exactly once per consumer);
// - producer sequences: per producer id, the offsets each recent sequence
//   number was stored at, so a retried append is stored once and answered
//   with its original offsets. Sequences need not arrive in order
//   (pipelined producers); a window of the last PRODUCER_WINDOW sequences
//   per producer is kept, and an older unseen sequence is refused rather
//   than risk storing a duplicate.
//
// Commands are binary (see encodeAppend/encodeControl): op byte 1 is an
// append (producer id, sequence, framed values), op byte 2 a JSON control
// command (register consumer, dequeue, commit offset). Deterministic: every
// replica applying the same log reaches the same state and results.
import type { StateMachine } from '../../raft/host/state-machine.js';
import { decodeFrames, framedSize, writeFrames } from './message-frames.js';

export const OP_APPEND = 1;
export const OP_CONTROL = 2;
/** Several appends that arrived together, in one Raft entry: u32 count, then per append u32 length + the append command. */
export const OP_MULTI_APPEND = 3;

/** Recent sequence numbers remembered per producer. */
export const PRODUCER_WINDOW = 4096;
/** Producers remembered per partition (least recently used forgotten first). */
export const MAX_PRODUCERS = 20_000;

export type ControlCommand =
  | { c: 'register'; consumer: string; from?: 'earliest' | 'latest' }
  | { c: 'dequeue'; consumer: string; max: number; rid?: string }
  | { c: 'commit'; consumer: string; offset: number };

export type AppendResult = { ok: true; firstOffset: number; lastOffset: number; duplicate: boolean } | { ok: false; error: string; status: number };

export type ControlResult =
  | { ok: true; c: 'register'; consumer: string; offset: number; created: boolean }
  | { ok: true; c: 'dequeue'; from: number; count: number; offset: number; repeated: boolean }
  | { ok: true; c: 'commit'; offset: number }
  | { ok: false; error: string; status: number };

export type PartitionResult = AppendResult | ControlResult | AppendResult[];

interface ConsumerState {
  offset: number;
  lastRid: string | null;
  lastFrom: number;
  lastCount: number;
}

interface ProducerState {
  /** seq -> [firstOffset, lastOffset], in insertion order. */
  seqs: Map<number, [number, number]>;
  /** Highest sequence forgotten from the window (-1: none). */
  evictedMax: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeAppend(values: readonly Uint8Array[], producer?: { id: string; seq: number }): Uint8Array {
  const pid = producer ? enc.encode(producer.id) : new Uint8Array(0);
  if (pid.byteLength > 255) throw new Error('producer id longer than 255 bytes');
  const header = 1 + 1 + pid.byteLength + 8;
  const out = new Uint8Array(header + framedSize(values));
  const view = new DataView(out.buffer);
  out[0] = OP_APPEND;
  out[1] = pid.byteLength;
  out.set(pid, 2);
  view.setFloat64(2 + pid.byteLength, producer ? producer.seq : Number.NaN);
  writeFrames(values, out, header);
  return out;
}

/** Same as encodeAppend, from an already framed body (the broker's zero-parse path). */
export function encodeAppendFramed(framed: Uint8Array, producer?: { id: string; seq: number }): Uint8Array {
  const pid = producer ? enc.encode(producer.id) : new Uint8Array(0);
  if (pid.byteLength > 255) throw new Error('producer id longer than 255 bytes');
  const header = 1 + 1 + pid.byteLength + 8;
  const out = new Uint8Array(header + framed.byteLength);
  const view = new DataView(out.buffer);
  out[0] = OP_APPEND;
  out[1] = pid.byteLength;
  out.set(pid, 2);
  view.setFloat64(2 + pid.byteLength, producer ? producer.seq : Number.NaN);
  out.set(framed, header);
  return out;
}

/** Coalesce append commands (each from encodeAppend*) into one entry; results come back in the same order. */
export function encodeMultiAppend(appends: readonly Uint8Array[]): Uint8Array {
  let size = 5;
  for (const a of appends) size += 4 + a.byteLength;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = OP_MULTI_APPEND;
  view.setUint32(1, appends.length);
  let pos = 5;
  for (const a of appends) {
    view.setUint32(pos, a.byteLength);
    out.set(a, pos + 4);
    pos += 4 + a.byteLength;
  }
  return out;
}

export function encodeControl(cmd: ControlCommand): Uint8Array {
  const json = enc.encode(JSON.stringify(cmd));
  const out = new Uint8Array(1 + json.byteLength);
  out[0] = OP_CONTROL;
  out.set(json, 1);
  return out;
}

export class PartitionStateMachine implements StateMachine<PartitionResult> {
  private messages: Uint8Array[] = [];
  private bytes = 0;
  private consumers = new Map<string, ConsumerState>();
  private producers = new Map<string, ProducerState>();
  /** Called after messages were appended (for long polls). */
  onAppend: (() => void) | null = null;

  /** Next offset to be written = number of messages. */
  get highWatermark(): number {
    return this.messages.length;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  get consumerCount(): number {
    return this.consumers.size;
  }

  get producerCount(): number {
    return this.producers.size;
  }

  consumerOffset(consumer: string): number | undefined {
    return this.consumers.get(consumer)?.offset;
  }

  consumerNames(): string[] {
    return [...this.consumers.keys()];
  }

  /** Messages [from, from+max) limited to about maxBytes (at least one when any). */
  read(from: number, max: number, maxBytes = Infinity): Uint8Array[] {
    const out: Uint8Array[] = [];
    let size = 0;
    for (let i = from; i < this.messages.length && out.length < max; i++) {
      const m = this.messages[i]!;
      if (out.length > 0 && size + m.byteLength > maxBytes) break;
      out.push(m);
      size += m.byteLength;
    }
    return out;
  }

  apply(data: Uint8Array): PartitionResult {
    if (data[0] === OP_APPEND) return this.applyAppend(data);
    if (data[0] === OP_CONTROL) return this.applyControl(JSON.parse(dec.decode(data.subarray(1))) as ControlCommand);
    if (data[0] === OP_MULTI_APPEND) {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const count = view.getUint32(1);
      const out: AppendResult[] = [];
      let pos = 5;
      for (let i = 0; i < count; i++) {
        const len = view.getUint32(pos);
        out.push(this.applyAppend(data.subarray(pos + 4, pos + 4 + len)));
        pos += 4 + len;
      }
      return out;
    }
    // Unknown op from a newer version: refuse identically everywhere.
    return { ok: false, error: `unknown partition command ${data[0]}`, status: 400 };
  }

  private applyAppend(data: Uint8Array): AppendResult {
    const pidLen = data[1]!;
    const pid = pidLen > 0 ? dec.decode(data.subarray(2, 2 + pidLen)) : null;
    const seq = new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(2 + pidLen);
    let producer: ProducerState | undefined;
    if (pid !== null && !Number.isNaN(seq)) {
      producer = this.producers.get(pid);
      if (producer) {
        const seen = producer.seqs.get(seq);
        if (seen) return { ok: true, firstOffset: seen[0], lastOffset: seen[1], duplicate: true };
        if (seq <= producer.evictedMax) {
          return { ok: false, status: 409, error: `sequence ${seq} of producer ${pid} is older than the ${PRODUCER_WINDOW} sequences remembered; it may be a duplicate, so it was not stored` };
        }
        // Keep the producer map in least-recently-used order.
        this.producers.delete(pid);
        this.producers.set(pid, producer);
      } else {
        producer = { seqs: new Map(), evictedMax: -1 };
        this.producers.set(pid, producer);
        if (this.producers.size > MAX_PRODUCERS) this.producers.delete(this.producers.keys().next().value as string);
      }
    }
    // Own the bytes: the entry buffer may be a view into storage buffers.
    const body = data.slice(2 + pidLen + 8);
    const values = decodeFrames(body);
    const first = this.messages.length;
    for (const v of values) {
      this.messages.push(v);
      this.bytes += v.byteLength;
    }
    const last = this.messages.length - 1;
    if (producer) {
      producer.seqs.set(seq, [first, last]);
      if (producer.seqs.size > PRODUCER_WINDOW) {
        const [oldest] = producer.seqs.keys();
        producer.seqs.delete(oldest!);
        producer.evictedMax = Math.max(producer.evictedMax, oldest!);
      }
    }
    if (values.length > 0) this.onAppend?.();
    return { ok: true, firstOffset: first, lastOffset: last, duplicate: false };
  }

  private applyControl(cmd: ControlCommand): ControlResult {
    switch (cmd.c) {
      case 'register': {
        const existing = this.consumers.get(cmd.consumer);
        if (existing) return { ok: true, c: 'register', consumer: cmd.consumer, offset: existing.offset, created: false };
        const offset = cmd.from === 'latest' ? this.messages.length : 0;
        this.consumers.set(cmd.consumer, { offset, lastRid: null, lastFrom: 0, lastCount: 0 });
        return { ok: true, c: 'register', consumer: cmd.consumer, offset, created: true };
      }
      case 'dequeue': {
        const st = this.consumers.get(cmd.consumer);
        if (!st) return { ok: false, status: 404, error: `unknown consumer "${cmd.consumer}" on this partition: register it first` };
        if (cmd.rid !== undefined && cmd.rid === st.lastRid) {
          return { ok: true, c: 'dequeue', from: st.lastFrom, count: st.lastCount, offset: st.offset, repeated: true };
        }
        const max = Math.max(0, Math.floor(cmd.max));
        const count = Math.min(max, this.messages.length - st.offset);
        const from = st.offset;
        st.offset += count;
        st.lastRid = cmd.rid ?? null;
        st.lastFrom = from;
        st.lastCount = count;
        return { ok: true, c: 'dequeue', from, count, offset: st.offset, repeated: false };
      }
      case 'commit': {
        const st = this.consumers.get(cmd.consumer);
        if (!st) return { ok: false, status: 404, error: `unknown consumer "${cmd.consumer}" on this partition: register it first` };
        if (!Number.isInteger(cmd.offset) || cmd.offset < 0 || cmd.offset > this.messages.length) {
          return { ok: false, status: 400, error: `offset ${cmd.offset} is outside [0, ${this.messages.length}]` };
        }
        st.offset = cmd.offset;
        st.lastRid = null;
        return { ok: true, c: 'commit', offset: st.offset };
      }
      default:
        return { ok: false, status: 400, error: `unknown control command ${(cmd as { c: string }).c}` };
    }
  }

  /** [u32 json length][json: consumers, producers][framed messages]. */
  snapshot(): Uint8Array {
    const meta = enc.encode(
      JSON.stringify({
        v: 1,
        count: this.messages.length,
        consumers: [...this.consumers.entries()],
        producers: [...this.producers.entries()].map(([id, p]) => [id, p.evictedMax, [...p.seqs.entries()]]),
      }),
    );
    const out = new Uint8Array(4 + meta.byteLength + framedSize(this.messages));
    new DataView(out.buffer).setUint32(0, meta.byteLength);
    out.set(meta, 4);
    writeFrames(this.messages, out, 4 + meta.byteLength);
    return out;
  }

  restore(data: Uint8Array): void {
    const own = data.slice();
    const metaLen = new DataView(own.buffer).getUint32(0);
    const meta = JSON.parse(dec.decode(own.subarray(4, 4 + metaLen))) as {
      v: number;
      count: number;
      consumers: [string, ConsumerState][];
      producers: [string, number, [number, [number, number]][]][];
    };
    this.messages = decodeFrames(own.subarray(4 + metaLen));
    if (this.messages.length !== meta.count) throw new Error(`partition snapshot holds ${this.messages.length} messages, its header says ${meta.count}`);
    this.bytes = this.messages.reduce((n, m) => n + m.byteLength, 0);
    this.consumers = new Map(meta.consumers);
    this.producers = new Map(meta.producers.map(([id, evictedMax, seqs]) => [id, { evictedMax, seqs: new Map(seqs) }]));
    this.onAppend?.();
  }
}
