// The data types of the pure Raft core. Nothing here does I/O.
//
// Indices and terms are plain numbers: a JavaScript number holds integers up
// to 2^53 exactly, far beyond any log this system will write.

/** A node's identity inside one Raft group (e.g. "manager-1", "broker-2"). */
export type NodeId = string;

export const EntryType = {
  /** Application data (empty data = the no-op a new leader appends). */
  Normal: 0,
  /** A membership change; `data` is an encoded ConfChange. */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be on disk before a vote is granted or a message is sent (Figure 2: "persistent state"). */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

/** Group membership: voters decide elections and commits; learners only receive the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

/**
 * One single-server membership change (Raft thesis §4.1). `address` travels
 * with the change so that every member learns how to reach a new node.
 */
export interface ConfChange {
  type: ConfChangeType;
  node: NodeId;
  address?: string;
  /** Opaque bytes echoed to the proposer (e.g. a request id). */
  context?: string;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
  /** Addresses of the members at `index` (node id → "host:port"). */
  addresses?: Record<NodeId, string>;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

export type MessageType =
  | 'app' // AppendEntries (also carries commit; heartbeats are a separate type)
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'snap' // InstallSnapshot
  | 'timeoutNow' // leadership transfer: start an election now
  | 'readIndex' // a follower forwards a ReadIndex request to the leader
  | 'readIndexResp';

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** app: term of the entry before `entries`; vote/preVote: candidate's last log term. */
  logTerm?: number;
  /** app: index of the entry before `entries`; appResp: highest matching (or rejected) index; vote: candidate's last index; readIndexResp: the read index. */
  index?: number;
  entries?: Entry[];
  commit?: number;
  reject?: boolean;
  /** appResp when rejecting: the follower's hint for the next probe (fast back-off). */
  rejectHint?: number;
  /** appResp when rejecting: the term of the follower's entry at rejectHint (0 if none). */
  logTermHint?: number;
  /** readIndex / heartbeat: the read request id the message is about. */
  context?: string;
  /** snap: the snapshot to install. */
  snapshot?: Snapshot;
  /** vote/preVote: set when a leadership transfer asked for this election (bypasses leader lease checks). */
  transfer?: boolean;
}

export type Role = 'follower' | 'candidate' | 'preCandidate' | 'leader';

export interface SoftState {
  leader: NodeId | null;
  role: Role;
}

/** A ReadIndex request that is now safe to serve once `applied >= index`. */
export interface ReadState {
  index: number;
  context: string;
}

/**
 * Everything the host must do after the core changed state. The host:
 * 1. persists `snapshot`, then `entries`, then `hardState` (fsync when `mustSync`);
 * 2. only then sends `messages`;
 * 3. applies `committedEntries` (and the snapshot) to the state machine;
 * 4. calls `advance(ready)`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  /** Entries to append to stable storage (may overwrite a conflicting suffix). */
  entries: Entry[];
  /** A snapshot received from the leader, to persist and apply. */
  snapshot?: Snapshot;
  messages: Message[];
  /** Entries known committed, in order, to apply to the state machine. */
  committedEntries: Entry[];
  readStates: ReadState[];
  /** True when entries or term/vote changed (commit alone need not be fsynced). */
  mustSync: boolean;
}

/**
 * The read side of stable storage, as the core sees it. Implementations hold
 * what the host has already persisted (the core keeps the not-yet-persisted
 * tail itself). All methods are synchronous and pure reads.
 */
export interface LogReader {
  /** Hard state and membership persisted at startup. */
  initialState(): { hardState: HardState; conf: ConfState };
  /** Entries in [lo, hi), limited to about maxBytes (at least one entry). Throws CompactedError if lo was compacted. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** Term of entry i; throws CompactedError if compacted, UnavailableError if beyond the last index. */
  term(i: number): number;
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot (index 0 when none). */
  snapshot(): Snapshot;
}

export class CompactedError extends Error {
  constructor(index: number) {
    super(`raft log: index ${index} has been compacted`);
    this.name = 'CompactedError';
  }
}

export class UnavailableError extends Error {
  constructor(index: number) {
    super(`raft log: index ${index} is not available yet`);
    this.name = 'UnavailableError';
  }
}

/** Thrown by propose/readIndex/transfer when this node cannot serve the request. */
export class NotLeaderError extends Error {
  constructor(readonly leader: NodeId | null) {
    super(leader ? `not the leader; leader is ${leader}` : 'no leader is known');
    this.name = 'NotLeaderError';
  }
}

export class ProposalDroppedError extends Error {
  constructor(reason: string) {
    super(`proposal dropped: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}

export interface RaftConfig {
  id: NodeId;
  /** Ticks without hearing from a leader before starting an election (randomized in [e, 2e)). */
  electionTick: number;
  /** Leader sends heartbeats every heartbeatTick ticks. */
  heartbeatTick: number;
  storage: LogReader;
  /** Highest index already applied to the state machine at restart. */
  applied?: number;
  /** Injected randomness in [0, 1); the core never calls Math.random. */
  random: () => number;
  /** Max bytes of entries in one append message. */
  maxSizePerMsg?: number;
  /** Max append messages in flight to one follower (pipelining window). */
  maxInflight?: number;
  /** Max bytes of proposals not yet committed at the leader; further proposals are refused. */
  maxUncommittedBytes?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Test-only: serve reads locally without ReadIndex (deliberately unsafe; the checker must catch it). */
  unsafeLocalReads?: boolean;
}
