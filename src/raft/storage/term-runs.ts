// The term of every log index, stored as runs (first index, term). Terms
// change only on elections, so a log of millions of entries has a handful of
// runs; the storage needs terms to decide whether a snapshot keeps the log
// after it and to reject appends whose terms go backwards.

interface Run {
  start: number;
  term: number;
}

export class TermRuns {
  private runs: Run[] = [];

  /** Term of index `i`, or undefined when no run covers it (callers bound `i` by the last index). */
  termAt(i: number): number | undefined {
    const runs = this.runs;
    let lo = 0;
    let hi = runs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (runs[mid]!.start <= i) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? undefined : runs[found]!.term;
  }

  /** Records that index `i` (which follows the previous one) has `term`. */
  push(i: number, term: number): void {
    const last = this.runs[this.runs.length - 1];
    if (last === undefined || last.term !== term) this.runs.push({ start: i, term });
  }

  /** Forgets indices >= i. */
  truncateFrom(i: number): void {
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.start >= i) this.runs.pop();
  }

  /** Forgets indices < i (the run that covers i stays). */
  dropBefore(i: number): void {
    let keepFrom = 0;
    while (keepFrom + 1 < this.runs.length && this.runs[keepFrom + 1]!.start <= i) keepFrom++;
    if (keepFrom > 0) this.runs.splice(0, keepFrom);
  }

  clear(): void {
    this.runs = [];
  }
}
