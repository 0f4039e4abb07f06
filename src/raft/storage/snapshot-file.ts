// The snapshot file format and naming.
//
//   magic "DVSN" | version u32 | meta length u32 | data length u64 | meta (JSON, UTF-8) | data | crc32 u32
//
// The checksum covers everything before it. Meta is JSON because it is small,
// written rarely, and holds nested structures (ConfState, addresses); the
// data is opaque bytes. Files are named snap-<index>-<term>.snap (16 hex
// digits each) so that the newest sorts last and recovery can pick it without
// reading the others.

import type { Snapshot, SnapshotMeta } from '../core/types.js';
import { crc32 } from './checksum.js';
import { plainBytes } from './record-codec.js';

const MAGIC = [0x44, 0x56, 0x53, 0x4e]; // "DVSN"
const VERSION = 1;
const HEADER_BYTES = 4 + 4 + 4 + 8;
const TRAILER_BYTES = 4;
const TWO_POW_32 = 0x1_0000_0000;

const SNAPSHOT_NAME = /^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

export function snapshotFileName(index: number, term: number): string {
  return `snap-${index.toString(16).padStart(16, '0')}-${term.toString(16).padStart(16, '0')}.snap`;
}

/** Index and term encoded in a snapshot file name, or null if the name is not one. */
export function parseSnapshotFileName(name: string): { index: number; term: number } | null {
  const match = SNAPSHOT_NAME.exec(name);
  if (!match) return null;
  return { index: Number.parseInt(match[1]!, 16), term: Number.parseInt(match[2]!, 16) };
}

/** The file as three pieces (header+meta, data, trailer) so that large data is not copied. */
export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array[] {
  const meta = new TextEncoder().encode(JSON.stringify(snapshot.meta));
  const head = new Uint8Array(HEADER_BYTES + meta.length);
  const view = new DataView(head.buffer);
  head.set(MAGIC, 0);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, meta.length, true);
  view.setUint32(12, snapshot.data.length % TWO_POW_32, true);
  view.setUint32(16, Math.floor(snapshot.data.length / TWO_POW_32), true);
  head.set(meta, HEADER_BYTES);
  const trailer = new Uint8Array(TRAILER_BYTES);
  new DataView(trailer.buffer).setUint32(0, crc32(snapshot.data, crc32(head)), true);
  return [head, snapshot.data, trailer];
}

/** Decodes a snapshot file; returns the reason when it is damaged. */
export function decodeSnapshotFile(file: Uint8Array): { snapshot: Snapshot } | { error: string } {
  const bytes = plainBytes(file);
  if (bytes.length < HEADER_BYTES + TRAILER_BYTES) return { error: `${bytes.length} bytes, shorter than a header` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (MAGIC.some((b, i) => bytes[i] !== b)) return { error: 'bad magic' };
  const version = view.getUint32(4, true);
  if (version !== VERSION) return { error: `unknown version ${version}` };
  const metaLength = view.getUint32(8, true);
  const dataLength = view.getUint32(12, true) + view.getUint32(16, true) * TWO_POW_32;
  if (HEADER_BYTES + metaLength + dataLength + TRAILER_BYTES !== bytes.length) {
    return { error: `length fields say ${HEADER_BYTES + metaLength + dataLength + TRAILER_BYTES} bytes, file has ${bytes.length}` };
  }
  const crcAt = bytes.length - TRAILER_BYTES;
  if (view.getUint32(crcAt, true) !== crc32(bytes.subarray(0, crcAt))) return { error: 'checksum mismatch' };
  let meta: SnapshotMeta;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + metaLength)));
  } catch (error) {
    return { error: `meta is not JSON: ${(error as Error).message}` };
  }
  if (!isSnapshotMeta(meta)) return { error: 'meta lacks index, term or conf' };
  const dataStart = HEADER_BYTES + metaLength;
  return { snapshot: { meta, data: bytes.slice(dataStart, dataStart + dataLength) } };
}

function isSnapshotMeta(value: unknown): value is SnapshotMeta {
  if (typeof value !== 'object' || value === null) return false;
  const meta = value as Record<string, unknown>;
  const conf = meta.conf as Record<string, unknown> | undefined;
  return (
    Number.isSafeInteger(meta.index) &&
    Number.isSafeInteger(meta.term) &&
    typeof conf === 'object' &&
    conf !== null &&
    Array.isArray(conf.voters) &&
    Array.isArray(conf.learners)
  );
}
