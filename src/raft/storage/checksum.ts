// CRC-32 (IEEE 802.3, the zlib/PNG polynomial) over byte ranges.
//
// node:zlib's crc32 (Node >= 20.15) is native and an order of magnitude faster
// than any JavaScript loop, which matters because every log record is
// checksummed on the write path. The table-driven version is kept as the
// fallback for runtimes without it and as an independent reference in tests.
import zlib from 'node:zlib';

const CRC32_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** Table-driven CRC-32; `previous` continues a checksum over concatenated ranges. */
export function crc32Table(bytes: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    crc = CRC32_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}

const nativeCrc32: ((data: Uint8Array, value?: number) => number) | undefined =
  typeof zlib.crc32 === 'function' ? zlib.crc32 : undefined;

/** CRC-32 of `bytes`; pass the previous result as `previous` to checksum several ranges as one. */
export function crc32(bytes: Uint8Array, previous = 0): number {
  return nativeCrc32 ? nativeCrc32(bytes, previous) >>> 0 : crc32Table(bytes, previous);
}
