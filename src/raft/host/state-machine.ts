// What a replicated service plugs into a Raft group.
export interface StateMachine<R = unknown> {
  /** Apply one committed command (never a no-op or conf change). Deterministic. */
  apply(data: Uint8Array, index: number): R;
  /** Serialize the whole state (at the last applied index). */
  snapshot(): Uint8Array;
  /** Replace the whole state with a snapshot's. */
  restore(data: Uint8Array): void;
}
