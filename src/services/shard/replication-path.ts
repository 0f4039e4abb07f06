// How a batch of votes is made durable before the voters are answered: the
// replication mode's acknowledgement rule (DESIGN §2).
//
//   async  primary commit (vote + outbox row, one transaction); the outbox
//          relay ships it to the shard's log partition later
//   log    primary commit AND log append, in parallel; answer when both are done
//   sync   primary commit, then every replica has applied
//
// Part A implements the step every mode starts with, the primary commit
// (with its outbox row whenever the cluster has a vote log). Part B adds
// the log append (log), the replica wait (sync) and the outbox relay (async)
// as other ReplicationPath implementations, chosen in createReplicationPath.
import type { ReplicationMode } from '../../core/topology.js';
import type { PendingVote, VoteOutcome } from './vote-batcher.js';
import type { PrimaryTarget } from './primary-connection.js';
import type { VoteStore } from './vote-store.js';

export interface ReplicationPath {
  readonly mode: ReplicationMode;
  /** Make the batch durable as the mode requires; one outcome per vote, in order. */
  commit(batch: PendingVote[], primary: PrimaryTarget): Promise<VoteOutcome[]>;
  /** What /health tells about replication. */
  describe(): { mode: ReplicationMode; acknowledgedAfter: string; replicasFed: boolean; note?: string };
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Part A: every mode acknowledges after the primary commit; replicas are not fed yet. */
export class PrimaryCommitPath implements ReplicationPath {
  constructor(
    readonly mode: ReplicationMode,
    private readonly store: VoteStore,
  ) {}

  commit(batch: PendingVote[], primary: PrimaryTarget): Promise<VoteOutcome[]> {
    return this.store.commitBatch(primary.pool, primary.epoch, batch);
  }

  describe() {
    return {
      mode: this.mode,
      acknowledgedAfter: 'primary commit',
      replicasFed: false,
      note: `replication "${this.mode}" is not wired yet: votes are committed on the primary only (issue 5 part B ships them to the replicas)`,
    };
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

export function createReplicationPath(mode: ReplicationMode, deps: { store: VoteStore }): ReplicationPath {
  return new PrimaryCommitPath(mode, deps.store);
}
