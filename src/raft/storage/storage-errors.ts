// Errors raised by the durable Raft storage.

/**
 * The on-disk log or snapshot is damaged in a way that recovery must not
 * paper over: a bad record followed by good ones, a bad record in a segment
 * that is not the last, missing segments, a log that refers to a snapshot
 * that is gone. Truncating here could drop committed entries, so the node
 * refuses to start; an operator must restore the data directory or rebuild
 * the node from its peers.
 */
export class LogCorruptionError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number | null,
    readonly reason: string,
  ) {
    super(
      `raft storage is corrupt: ${file}${offset === null ? '' : ` at byte ${offset}`}: ${reason}; ` +
        'refusing to start so that committed entries are not silently dropped ' +
        '(restore the data directory from a backup or remove it and let the node catch up from its peers)',
    );
    this.name = 'LogCorruptionError';
  }
}

/**
 * A write or fsync failed earlier. After a failed fsync the kernel may have
 * dropped the dirty pages, so nothing written since the last good sync can be
 * trusted; every later call fails until the storage is reopened (which
 * recovers from what is really on disk).
 */
export class StorageFailedError extends Error {
  constructor(cause: unknown) {
    super(
      `raft storage failed earlier and refuses further use: ${cause instanceof Error ? cause.message : String(cause)}; ` +
        'close it and reopen the data directory',
      { cause },
    );
    this.name = 'StorageFailedError';
  }
}
