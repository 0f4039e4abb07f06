// Heartbeat-based failure detection, as the manager leader runs it. Pure:
// time is passed in. Heartbeats are soft state kept by the leader only; a
// node changes between alive and dead when it has (not) been heard from for
// timeoutMs, and only those transitions are committed through Raft. A new
// leader starts with a grace period (every known node counts as just heard),
// so a leader change never declares the whole cluster dead.
export type Liveness = 'alive' | 'dead';

export interface NodeBeat {
  id: string;
  role: string;
  http: string;
  lastSeen: number;
  /** The latest status the node reported (for status displays). */
  info: Record<string, unknown>;
}

export interface Transition {
  id: string;
  to: Liveness;
  /** Milliseconds since it was last heard from. */
  silentMs: number;
}

export const DEFAULT_HEARTBEAT_MS = 250;
export const DEFAULT_FAILURE_TIMEOUT_MS = 1500;

export class FailureDetector {
  private beats = new Map<string, NodeBeat>();
  /** What the replicated state says about each node (the last committed transition). */
  private committed = new Map<string, Liveness>();

  constructor(readonly timeoutMs: number = DEFAULT_FAILURE_TIMEOUT_MS) {}

  /** Start (or restart after a leader change) with the replicated view; every node gets a fresh grace period. */
  reset(now: number, known: { id: string; role: string; http: string; state: Liveness }[]): void {
    this.beats.clear();
    this.committed.clear();
    for (const k of known) {
      this.committed.set(k.id, k.state);
      // Only nodes believed alive get the grace period; a dead node must really beat to come back.
      if (k.state === 'alive') this.beats.set(k.id, { id: k.id, role: k.role, http: k.http, lastSeen: now, info: {} });
    }
  }

  heartbeat(now: number, beat: Omit<NodeBeat, 'lastSeen'>): { isNew: boolean } {
    const isNew = !this.beats.has(beat.id) && !this.committed.has(beat.id);
    this.beats.set(beat.id, { ...beat, lastSeen: now });
    return { isNew };
  }

  /** Transitions to commit now (alive nodes gone silent, dead nodes heard again). */
  evaluate(now: number): Transition[] {
    const out: Transition[] = [];
    for (const b of this.beats.values()) {
      const silentMs = now - b.lastSeen;
      const state: Liveness = silentMs > this.timeoutMs ? 'dead' : 'alive';
      const was = this.committed.get(b.id);
      if (was !== state) out.push({ id: b.id, to: state, silentMs });
    }
    return out;
  }

  /** A transition was committed through Raft. */
  committedTransition(id: string, to: Liveness): void {
    this.committed.set(id, to);
  }

  forget(id: string): void {
    this.beats.delete(id);
    this.committed.delete(id);
  }

  view(now: number): (NodeBeat & { silentMs: number; state: Liveness | 'unknown' })[] {
    return [...this.beats.values()].map((b) => ({ ...b, silentMs: now - b.lastSeen, state: this.committed.get(b.id) ?? 'unknown' }));
  }
}
