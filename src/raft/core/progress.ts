// The leader's view of one follower's log (§5.3: nextIndex and matchIndex),
// with the flow control that makes replication pipelined but bounded.

/** A bounded window of append messages in flight, identified by their last index. */
export class Inflights {
  private buf: number[] = [];

  constructor(readonly capacity: number) {}

  add(lastIndex: number): void {
    if (this.full()) throw new Error('inflights: window is full');
    this.buf.push(lastIndex);
  }

  /** Free every message whose last index is <= to (they were acknowledged). */
  freeLE(to: number): void {
    let n = 0;
    while (n < this.buf.length && this.buf[n]! <= to) n++;
    if (n > 0) this.buf.splice(0, n);
  }

  freeFirstOne(): void {
    this.buf.shift();
  }

  full(): boolean {
    return this.buf.length >= this.capacity;
  }

  count(): number {
    return this.buf.length;
  }

  reset(): void {
    this.buf = [];
  }
}

/**
 * probe: send one append at a time until the follower's position is known;
 * replicate: stream appends optimistically within the inflight window;
 * snapshot: a snapshot is on its way, send nothing else.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append is outstanding, wait for a response or a heartbeat response. */
  probeSent = false;
  pendingSnapshot = 0;
  /** Ticks spent in snapshot state: a lost snapshot must not stall the follower forever. */
  snapshotTicks = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    maxInflight: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapIndex;
  }

  /** A successful append response up to n. Returns false if it was stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** An append carrying entries up to `last` was sent. */
  sentEntries(last: number, count: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = last + 1;
        this.inflights.add(last);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /**
   * A rejected append: the follower has no entry matching at `rejected`.
   * `hint` is the follower's suggestion for where the logs may match. Returns
   * false if the rejection is stale (already superseded).
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // stale probe answer
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
