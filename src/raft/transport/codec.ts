// Binary wire format of the Raft transport.
//
// A connection carries length-prefixed frames:
//
//   frame    = length:u32be  kind:u8  body          (length counts kind + body)
//   hello    = magic:u32be version:u8 from:str to:str   (dialer -> acceptor, first frame)
//   helloAck = node:str                                  (acceptor -> dialer)
//   helloRej = reason:str                                (acceptor -> dialer, then close)
//   batch    = count:u32be envelope*count
//   ping / pong = (empty)
//
//   envelope = group:str type:u8 flags:u16le from:str to:str term:uv [optional fields in flag order]
//   entry    = term:uv index:uv type:u8 data:bytes
//   snapshot = meta:str (JSON) data:bytes
//   str      = byteLength:uv utf8          bytes = length:uv raw
//   uv       = unsigned LEB128 varint, at most 8 bytes, at most 2^53 - 1
//
// Varints keep the per-entry overhead of small entries to a few bytes (terms
// and indices are small or slowly growing numbers). Entry and snapshot data
// travel as raw bytes; only snapshot metadata, which is small and rare, is
// JSON. Every read is bounds-checked and every failure is a CodecError, so a
// malformed frame can close one connection but never crash the process.
import type { Entry, EntryType, Message, MessageType, Snapshot, SnapshotMeta } from '../core/types.js';

/** A Raft message addressed to one Raft group of a multi-Raft process. */
export interface Envelope {
  group: string;
  msg: Message;
}

/** The input cannot be encoded, or the bytes are not a valid frame. */
export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

export const FrameKind = {
  Hello: 1,
  HelloAck: 2,
  HelloReject: 3,
  Batch: 4,
  Ping: 5,
  Pong: 6,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export const PROTOCOL_MAGIC = 0x44565254; // "DVRT"
export const PROTOCOL_VERSION = 1;
/** Bytes of the length prefix in front of every frame. */
export const FRAME_LENGTH_BYTES = 4;
/** Bytes in front of the first envelope of a batch frame: length, kind, count. */
export const BATCH_HEADER_BYTES = FRAME_LENGTH_BYTES + 1 + 4;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

// Record<MessageType, …> makes the compiler reject a MessageType added to the
// core without a wire code here.
const MESSAGE_TYPE_CODES: Record<MessageType, number> = {
  app: 0,
  appResp: 1,
  vote: 2,
  voteResp: 3,
  preVote: 4,
  preVoteResp: 5,
  heartbeat: 6,
  heartbeatResp: 7,
  snap: 8,
  timeoutNow: 9,
  readIndex: 10,
  readIndexResp: 11,
  // Codes are part of the wire format: never renumber; give new types new codes.
};
const MESSAGE_TYPES_BY_CODE: MessageType[] = [];
for (const [type, code] of Object.entries(MESSAGE_TYPE_CODES)) MESSAGE_TYPES_BY_CODE[code] = type as MessageType;
/** Every message type the codec knows (all of MessageType). */
export const MESSAGE_TYPES: readonly MessageType[] = Object.keys(MESSAGE_TYPE_CODES) as MessageType[];

/**
 * Every field of Message that the codec carries. Typed as Record<keyof
 * Message, …> so that a field added to Message in the core fails to compile
 * here instead of being silently dropped on the wire.
 */
export const ENCODED_MESSAGE_FIELDS: Record<keyof Message, true> = {
  type: true,
  from: true,
  to: true,
  term: true,
  logTerm: true,
  index: true,
  entries: true,
  commit: true,
  reject: true,
  rejectHint: true,
  logTermHint: true,
  context: true,
  snapshot: true,
  transfer: true,
};
export const ENCODED_ENTRY_FIELDS: Record<keyof Entry, true> = { term: true, index: true, type: true, data: true };

const F_LOG_TERM = 1 << 0;
const F_INDEX = 1 << 1;
const F_ENTRIES = 1 << 2;
const F_COMMIT = 1 << 3;
const F_REJECT = 1 << 4;
const F_REJECT_TRUE = 1 << 5;
const F_REJECT_HINT = 1 << 6;
const F_LOG_TERM_HINT = 1 << 7;
const F_CONTEXT = 1 << 8;
const F_SNAPSHOT = 1 << 9;
const F_TRANSFER = 1 << 10;
const F_TRANSFER_TRUE = 1 << 11;
const F_KNOWN = (1 << 12) - 1;

// ---------------------------------------------------------------------------
// Sizes

function uvarintSize(n: number, field: string): number {
  if (!(n >= 0 && Number.isSafeInteger(n))) {
    throw new CodecError(`cannot encode ${field}=${String(n)}: expected a non-negative safe integer`);
  }
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  n = Math.floor(n / 0x10000000);
  while (n > 0) {
    size++;
    n = Math.floor(n / 0x80);
  }
  return size;
}

// Group names and node ids repeat in every message; caching their UTF-8
// bytes saves measuring and transcoding them twice per message. The cache is
// bounded by clearing it, which costs only a few re-encodings.
const utf8Cache = new Map<string, Buffer>();
const UTF8_CACHE_LIMIT = 4096;

function cachedUtf8(s: string, field: string): Buffer {
  let bytes = utf8Cache.get(s);
  if (bytes === undefined) {
    if (typeof s !== 'string') throw new CodecError(`cannot encode ${field}: expected a string, got ${typeof s}`);
    if (utf8Cache.size >= UTF8_CACHE_LIMIT) utf8Cache.clear();
    bytes = Buffer.from(s, 'utf8');
    utf8Cache.set(s, bytes);
  }
  return bytes;
}

function stringSize(s: string, field: string): number {
  if (typeof s !== 'string') throw new CodecError(`cannot encode ${field}: expected a string, got ${typeof s}`);
  const n = Buffer.byteLength(s, 'utf8');
  return uvarintSize(n, field) + n;
}

function bytesSize(b: Uint8Array, field: string): number {
  if (!(b instanceof Uint8Array)) throw new CodecError(`cannot encode ${field}: expected a Uint8Array`);
  return uvarintSize(b.length, field) + b.length;
}

function entrySize(e: Entry): number {
  if (!(e.type >= 0 && e.type <= 255 && Number.isInteger(e.type))) {
    throw new CodecError(`cannot encode entry type ${String(e.type)}: expected an integer in [0, 255]`);
  }
  return uvarintSize(e.term, 'entry.term') + uvarintSize(e.index, 'entry.index') + 1 + bytesSize(e.data, 'entry.data');
}

function snapshotMetaJson(meta: SnapshotMeta): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(meta);
  } catch (err) {
    throw new CodecError(`cannot encode snapshot.meta: ${(err as Error).message}`);
  }
  if (typeof json !== 'string') throw new CodecError('cannot encode snapshot.meta: not JSON-serializable');
  return json;
}

/**
 * Exact number of bytes `writeEnvelope` will write. Throws CodecError when the
 * message cannot be encoded (wrong types, negative or fractional numbers).
 */
export function measureEnvelope(group: string, msg: Message): number {
  const groupBytes = cachedUtf8(group, 'group').length;
  const fromBytes = cachedUtf8(msg.from, 'msg.from').length;
  const toBytes = cachedUtf8(msg.to, 'msg.to').length;
  if (MESSAGE_TYPE_CODES[msg.type] === undefined) throw new CodecError(`cannot encode message type ${String(msg.type)}`);
  let size =
    uvarintSize(groupBytes, 'group') +
    groupBytes +
    3 +
    uvarintSize(fromBytes, 'msg.from') +
    fromBytes +
    uvarintSize(toBytes, 'msg.to') +
    toBytes +
    uvarintSize(msg.term, 'msg.term');
  if (msg.logTerm !== undefined) size += uvarintSize(msg.logTerm, 'msg.logTerm');
  if (msg.index !== undefined) size += uvarintSize(msg.index, 'msg.index');
  if (msg.entries !== undefined) {
    const entries = msg.entries;
    if (!Array.isArray(entries)) throw new CodecError('cannot encode msg.entries: expected an array');
    size += uvarintSize(entries.length, 'msg.entries.length');
    for (let i = 0; i < entries.length; i++) size += entrySize(entries[i]!);
  }
  if (msg.commit !== undefined) size += uvarintSize(msg.commit, 'msg.commit');
  if (msg.rejectHint !== undefined) size += uvarintSize(msg.rejectHint, 'msg.rejectHint');
  if (msg.logTermHint !== undefined) size += uvarintSize(msg.logTermHint, 'msg.logTermHint');
  if (msg.context !== undefined) size += stringSize(msg.context, 'msg.context');
  if (msg.snapshot !== undefined) {
    const json = snapshotMetaJson(msg.snapshot.meta);
    size += stringSize(json, 'snapshot.meta') + bytesSize(msg.snapshot.data, 'snapshot.data');
  }
  return size;
}

// ---------------------------------------------------------------------------
// Writing (callers have measured, so the buffer is known to be large enough)

function writeUvarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    // `& 0x7f` is exact for any safe integer: ToInt32 keeps the low 32 bits.
    buf[pos++] = (n & 0x7f) | 0x80;
    n = n > 0xffffffff ? Math.floor(n / 0x80) : n >>> 7;
  }
  buf[pos++] = n;
  return pos;
}

function writeCachedString(buf: Buffer, pos: number, s: string): number {
  const bytes = cachedUtf8(s, 'string');
  pos = writeUvarint(buf, pos, bytes.length);
  if (bytes.length <= 32) {
    for (let i = 0; i < bytes.length; i++) buf[pos + i] = bytes[i]!;
  } else {
    bytes.copy(buf, pos);
  }
  return pos + bytes.length;
}

function writeString(buf: Buffer, pos: number, s: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  pos = writeUvarint(buf, pos, n);
  buf.write(s, pos, n, 'utf8');
  return pos + n;
}

function writeBytes(buf: Buffer, pos: number, b: Uint8Array): number {
  pos = writeUvarint(buf, pos, b.length);
  if (b.length <= 32) {
    for (let i = 0; i < b.length; i++) buf[pos + i] = b[i]!;
  } else {
    buf.set(b, pos);
  }
  return pos + b.length;
}

/** Writes one envelope at `pos`; returns the position after it. Measure first. */
export function writeEnvelope(buf: Buffer, pos: number, group: string, msg: Message): number {
  pos = writeCachedString(buf, pos, group);
  buf[pos++] = MESSAGE_TYPE_CODES[msg.type];
  let flags = 0;
  if (msg.logTerm !== undefined) flags |= F_LOG_TERM;
  if (msg.index !== undefined) flags |= F_INDEX;
  if (msg.entries !== undefined) flags |= F_ENTRIES;
  if (msg.commit !== undefined) flags |= F_COMMIT;
  if (msg.reject !== undefined) flags |= msg.reject ? F_REJECT | F_REJECT_TRUE : F_REJECT;
  if (msg.rejectHint !== undefined) flags |= F_REJECT_HINT;
  if (msg.logTermHint !== undefined) flags |= F_LOG_TERM_HINT;
  if (msg.context !== undefined) flags |= F_CONTEXT;
  if (msg.snapshot !== undefined) flags |= F_SNAPSHOT;
  if (msg.transfer !== undefined) flags |= msg.transfer ? F_TRANSFER | F_TRANSFER_TRUE : F_TRANSFER;
  buf[pos++] = flags & 0xff;
  buf[pos++] = flags >>> 8;
  pos = writeCachedString(buf, pos, msg.from);
  pos = writeCachedString(buf, pos, msg.to);
  pos = writeUvarint(buf, pos, msg.term);
  if (msg.logTerm !== undefined) pos = writeUvarint(buf, pos, msg.logTerm);
  if (msg.index !== undefined) pos = writeUvarint(buf, pos, msg.index);
  if (msg.entries !== undefined) {
    const entries = msg.entries;
    pos = writeUvarint(buf, pos, entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      pos = writeUvarint(buf, pos, e.term);
      pos = writeUvarint(buf, pos, e.index);
      buf[pos++] = e.type;
      pos = writeBytes(buf, pos, e.data);
    }
  }
  if (msg.commit !== undefined) pos = writeUvarint(buf, pos, msg.commit);
  if (msg.rejectHint !== undefined) pos = writeUvarint(buf, pos, msg.rejectHint);
  if (msg.logTermHint !== undefined) pos = writeUvarint(buf, pos, msg.logTermHint);
  if (msg.context !== undefined) pos = writeString(buf, pos, msg.context);
  if (msg.snapshot !== undefined) {
    pos = writeString(buf, pos, snapshotMetaJson(msg.snapshot.meta));
    pos = writeBytes(buf, pos, msg.snapshot.data);
  }
  return pos;
}

/** One envelope on its own (no frame around it). */
export function encodeEnvelope(group: string, msg: Message): Buffer {
  const size = measureEnvelope(group, msg);
  const buf = Buffer.allocUnsafe(size);
  const end = writeEnvelope(buf, 0, group, msg);
  if (end !== size) throw new Error(`raft codec: measured ${size} bytes but wrote ${end}`);
  return buf;
}

/** A complete batch frame (length prefix included) holding `envelopes`. */
export function encodeBatchFrame(envelopes: readonly Envelope[]): Buffer {
  let size = BATCH_HEADER_BYTES;
  const sizes = envelopes.map((e) => measureEnvelope(e.group, e.msg));
  for (const s of sizes) size += s;
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt32BE(size - FRAME_LENGTH_BYTES, 0);
  buf[4] = FrameKind.Batch;
  buf.writeUInt32BE(envelopes.length, 5);
  let pos = BATCH_HEADER_BYTES;
  for (const e of envelopes) pos = writeEnvelope(buf, pos, e.group, e.msg);
  if (pos !== size) throw new Error(`raft codec: measured ${size} bytes but wrote ${pos}`);
  return buf;
}

function encodeControlFrame(kind: FrameKind, bodySize: number, writeBody: (buf: Buffer, pos: number) => number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_LENGTH_BYTES + 1 + bodySize);
  buf.writeUInt32BE(1 + bodySize, 0);
  buf[4] = kind;
  const end = writeBody(buf, 5);
  if (end !== buf.length) throw new Error(`raft codec: control frame measured ${buf.length} bytes but wrote ${end}`);
  return buf;
}

export interface Hello {
  version: number;
  from: string;
  to: string;
}

export function encodeHello(from: string, to: string): Buffer {
  const size = 4 + 1 + stringSize(from, 'hello.from') + stringSize(to, 'hello.to');
  return encodeControlFrame(FrameKind.Hello, size, (buf, pos) => {
    buf.writeUInt32BE(PROTOCOL_MAGIC, pos);
    buf[pos + 4] = PROTOCOL_VERSION;
    pos = writeString(buf, pos + 5, from);
    return writeString(buf, pos, to);
  });
}

export function encodeHelloAck(node: string): Buffer {
  return encodeControlFrame(FrameKind.HelloAck, stringSize(node, 'helloAck.node'), (buf, pos) => writeString(buf, pos, node));
}

export function encodeHelloReject(reason: string): Buffer {
  return encodeControlFrame(FrameKind.HelloReject, stringSize(reason, 'helloReject.reason'), (buf, pos) =>
    writeString(buf, pos, reason),
  );
}

export const PING_FRAME: Buffer = encodeControlFrame(FrameKind.Ping, 0, (_buf, pos) => pos);
export const PONG_FRAME: Buffer = encodeControlFrame(FrameKind.Pong, 0, (_buf, pos) => pos);

// ---------------------------------------------------------------------------
// Reading

/** A cursor over one frame body; every read is bounds-checked. */
class ByteReader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  u8(what: string): number {
    if (this.pos >= this.end) throw new CodecError(`truncated frame: missing ${what}`);
    return this.buf[this.pos++]!;
  }

  u32(what: string): number {
    if (this.end - this.pos < 4) throw new CodecError(`truncated frame: missing ${what}`);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uvarint(what: string): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw new CodecError(`truncated frame: missing ${what}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw new CodecError(`bad ${what}: ${result} is beyond 2^53`);
        return result;
      }
      scale *= 0x80;
    }
    throw new CodecError(`bad ${what}: varint longer than 8 bytes`);
  }

  length(what: string): number {
    const n = this.uvarint(what);
    if (n > this.end - this.pos) {
      throw new CodecError(`bad ${what}: length ${n} exceeds the ${this.end - this.pos} bytes left in the frame`);
    }
    return n;
  }

  string(what: string): string {
    const n = this.length(what);
    const s = n <= DECODED_STRING_MAX ? decodeShortString(this.buf, this.pos, n) : this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  /** A copy (see copyOut), so that decoded data does not pin the receive buffer in memory. */
  bytes(what: string): Uint8Array {
    const n = this.length(what);
    const out = copyOut(this.buf, this.pos, n);
    this.pos += n;
    return out;
  }
}

// Decoded entry data is copied out of the receive buffer, which is shared with
// the rest of its frame and socket chunk. Small payloads are packed into
// shared 64 KiB slabs, as Node's Buffer pool does: one ArrayBuffer per entry
// would cost more than the rest of decoding together. A consequence: the
// `.buffer` of a decoded `data` holds other entries too; always go through the
// view (byteOffset/length), as Node's fs and net functions do.
const SLAB_BYTES = 64 * 1024;
const SLAB_MAX_COPY = 4 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;

// Group names and node ids arrive in every message and come from a small set;
// a direct-mapped cache from their bytes to the decoded string is cheaper
// than transcoding them each time.
const DECODED_STRING_MAX = 48;
const DECODED_STRING_SLOTS = 512;
const decodedBytes = new Uint8Array(DECODED_STRING_SLOTS * DECODED_STRING_MAX);
const decodedLengths = new Int32Array(DECODED_STRING_SLOTS).fill(-1);
const decodedStrings: string[] = new Array<string>(DECODED_STRING_SLOTS).fill('');

function decodeShortString(buf: Buffer, start: number, n: number): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ buf[start + i]!, 0x01000193);
  const slot = (h >>> 0) % DECODED_STRING_SLOTS;
  const base = slot * DECODED_STRING_MAX;
  if (decodedLengths[slot] === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (decodedBytes[base + i] !== buf[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return decodedStrings[slot]!;
  }
  const s = buf.toString('utf8', start, start + n);
  for (let i = 0; i < n; i++) decodedBytes[base + i] = buf[start + i]!;
  decodedLengths[slot] = n;
  decodedStrings[slot] = s;
  return s;
}

function copyOut(src: Buffer, start: number, n: number): Uint8Array {
  if (n > SLAB_MAX_COPY) {
    const own = new Uint8Array(n);
    own.set(src.subarray(start, start + n));
    return own;
  }
  if (slabUsed + n > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, n);
  slabUsed += n;
  if (n <= 64) {
    for (let i = 0; i < n; i++) out[i] = src[start + i]!;
  } else {
    out.set(src.subarray(start, start + n));
  }
  return out;
}

function isSafeUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function parseSnapshotMeta(json: string): SnapshotMeta {
  let meta: unknown;
  try {
    meta = JSON.parse(json);
  } catch (err) {
    throw new CodecError(`bad snapshot meta: ${(err as Error).message}`);
  }
  if (typeof meta !== 'object' || meta === null) throw new CodecError('bad snapshot meta: not an object');
  const m = meta as Record<string, unknown>;
  if (!isSafeUint(m.index) || !isSafeUint(m.term)) throw new CodecError('bad snapshot meta: index/term');
  const conf = m.conf as Record<string, unknown> | null | undefined;
  if (typeof conf !== 'object' || conf === null || !isStringArray(conf.voters) || !isStringArray(conf.learners)) {
    throw new CodecError('bad snapshot meta: conf');
  }
  if (m.addresses !== undefined) {
    const a = m.addresses;
    if (typeof a !== 'object' || a === null || Array.isArray(a) || !Object.values(a).every((x) => typeof x === 'string')) {
      throw new CodecError('bad snapshot meta: addresses');
    }
  }
  // Unknown fields are kept so that a newer core can add metadata.
  return m as unknown as SnapshotMeta;
}

function readEnvelope(r: ByteReader): Envelope {
  const group = r.string('group');
  const typeCode = r.u8('message type');
  const type = MESSAGE_TYPES_BY_CODE[typeCode];
  if (type === undefined) throw new CodecError(`bad message type code ${typeCode}`);
  const flags = r.u8('flags') | (r.u8('flags') << 8);
  if ((flags & ~F_KNOWN) !== 0) throw new CodecError(`bad message flags 0x${flags.toString(16)}`);
  const msg: Message = { type, from: r.string('msg.from'), to: r.string('msg.to'), term: r.uvarint('msg.term') };
  if (flags & F_LOG_TERM) msg.logTerm = r.uvarint('msg.logTerm');
  if (flags & F_INDEX) msg.index = r.uvarint('msg.index');
  if (flags & F_ENTRIES) {
    const count = r.uvarint('entry count');
    // Each entry takes at least 4 bytes; refuse counts the frame cannot hold
    // before allocating anything for them.
    if (count * 4 > r.remaining) throw new CodecError(`bad entry count ${count}: frame too short`);
    const entries: Entry[] = new Array<Entry>(count);
    for (let i = 0; i < count; i++) {
      const term = r.uvarint('entry.term');
      const index = r.uvarint('entry.index');
      const entryType = r.u8('entry.type') as EntryType;
      entries[i] = { term, index, type: entryType, data: r.bytes('entry.data') };
    }
    msg.entries = entries;
  }
  if (flags & F_COMMIT) msg.commit = r.uvarint('msg.commit');
  if (flags & F_REJECT) msg.reject = (flags & F_REJECT_TRUE) !== 0;
  else if (flags & F_REJECT_TRUE) throw new CodecError('bad message flags: reject value without reject');
  if (flags & F_REJECT_HINT) msg.rejectHint = r.uvarint('msg.rejectHint');
  if (flags & F_LOG_TERM_HINT) msg.logTermHint = r.uvarint('msg.logTermHint');
  if (flags & F_CONTEXT) msg.context = r.string('msg.context');
  if (flags & F_SNAPSHOT) {
    const meta = parseSnapshotMeta(r.string('snapshot.meta'));
    const snapshot: Snapshot = { meta, data: r.bytes('snapshot.data') };
    msg.snapshot = snapshot;
  }
  if (flags & F_TRANSFER) msg.transfer = (flags & F_TRANSFER_TRUE) !== 0;
  else if (flags & F_TRANSFER_TRUE) throw new CodecError('bad message flags: transfer value without transfer');
  return { group, msg };
}

/** Decodes one envelope produced by `encodeEnvelope`; the whole buffer must be consumed. */
export function decodeEnvelope(buf: Buffer): Envelope {
  const r = new ByteReader(buf, 0, buf.length);
  const env = readEnvelope(r);
  if (r.remaining !== 0) throw new CodecError(`${r.remaining} trailing bytes after the envelope`);
  return env;
}

/** A frame as cut from the stream: its kind and its body (without length and kind). */
export interface Frame {
  kind: number;
  body: Buffer;
}

/** Decodes the body of a batch frame. All or nothing: a bad envelope rejects the frame. */
export function decodeBatchBody(body: Buffer): Envelope[] {
  const r = new ByteReader(body, 0, body.length);
  const count = r.u32('batch count');
  // The smallest envelope takes 7 bytes.
  if (count * 7 > r.remaining) throw new CodecError(`bad batch count ${count}: frame too short`);
  const out: Envelope[] = new Array<Envelope>(count);
  for (let i = 0; i < count; i++) out[i] = readEnvelope(r);
  if (r.remaining !== 0) throw new CodecError(`${r.remaining} trailing bytes after ${count} envelopes`);
  return out;
}

export function decodeHello(body: Buffer): Hello {
  const r = new ByteReader(body, 0, body.length);
  const magic = r.u32('hello magic');
  if (magic !== PROTOCOL_MAGIC) throw new CodecError(`not a dvote raft transport peer (magic 0x${magic.toString(16)})`);
  const version = r.u8('hello version');
  const from = r.string('hello.from');
  const to = r.string('hello.to');
  if (r.remaining !== 0) throw new CodecError('trailing bytes after hello');
  return { version, from, to };
}

export function decodeHelloAck(body: Buffer): string {
  const r = new ByteReader(body, 0, body.length);
  const node = r.string('helloAck.node');
  if (r.remaining !== 0) throw new CodecError('trailing bytes after helloAck');
  return node;
}

export function decodeHelloReject(body: Buffer): string {
  const r = new ByteReader(body, 0, body.length);
  const reason = r.string('helloReject.reason');
  if (r.remaining !== 0) throw new CodecError('trailing bytes after helloReject');
  return reason;
}
