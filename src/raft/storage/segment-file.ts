// Log segment files: names and what the storage remembers about each one.
// Segments are named wal-<seq>.seg with seq in 16 hex digits, so that names
// sort in replay order.

export interface SegmentFile {
  seq: number;
  name: string;
  /** Highest entry index written to this segment (0 if none); compaction drops it once a snapshot covers this. */
  maxIndex: number;
}

const SEGMENT_NAME = /^wal-([0-9a-f]{16})\.seg$/;

export function segmentFileName(seq: number): string {
  return `wal-${seq.toString(16).padStart(16, '0')}.seg`;
}

/** The sequence number in a segment file name, or null if the name is not one. */
export function parseSegmentFileName(name: string): number | null {
  const match = SEGMENT_NAME.exec(name);
  return match ? Number.parseInt(match[1]!, 16) : null;
}
