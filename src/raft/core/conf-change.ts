// Encoding of membership-change entries. JSON is fine here: conf changes are
// rare and small, and readable bytes help when debugging a log.
import type { ConfChange } from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return enc.encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(dec.decode(data)) as ConfChange;
  if (v.type !== 'addVoter' && v.type !== 'addLearner' && v.type !== 'removeNode') {
    throw new Error(`conf change: unknown type ${String(v.type)}`);
  }
  if (typeof v.node !== 'string' || v.node === '') throw new Error('conf change: missing node id');
  return v;
}
