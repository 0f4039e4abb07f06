// The Raft consensus core: a pure state machine in the style of etcd-raft.
//
// Inputs: tick(), step(message), propose(data), proposeConfChange(cc),
// readIndex(ctx), transferLeadership(to). Output: a Ready batch the host
// persists, sends and applies before calling advance(). No sockets, timers,
// clocks, randomness (injected) or disk in here, so the simulator can drive it
// deterministically.
//
// Section numbers refer to "In Search of an Understandable Consensus
// Algorithm (Extended Version)", Ongaro & Ousterhout, and to Ongaro's thesis
// where noted.
import { encodeConfChange } from './conf-change.js';
import { Progress } from './progress.js';
import { committedIndex, hasQuorum, quorumSize, voteResult } from './quorum.js';
import { RaftLog } from './raft-log.js';
import {
  CompactedError,
  EntryType,
  NotLeaderError,
  ProposalDroppedError,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type RaftConfig,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from './types.js';

interface PendingRead {
  index: number;
  context: string;
  from: NodeId;
  acks: Set<NodeId>;
}

export interface PeerStatus {
  id: NodeId;
  match: number;
  next: number;
  state: string;
  recentActive: boolean;
  isLearner: boolean;
}

export interface RaftStatus {
  id: NodeId;
  term: number;
  vote: NodeId | null;
  role: Role;
  leader: NodeId | null;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  conf: ConfState;
  leadTransferee: NodeId | null;
  /** Only on the leader. */
  progress: PeerStatus[];
}

const DEFAULT_MAX_SIZE_PER_MSG = 1 << 20;
const DEFAULT_MAX_INFLIGHT = 256;
const DEFAULT_MAX_UNCOMMITTED = 64 << 20;

function entrySize(e: Entry): number {
  return e.data.byteLength + 24;
}

const EMPTY = new Uint8Array(0);

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | null = null;
  lead: NodeId | null = null;
  role: Role = 'follower';
  readonly log: RaftLog;

  private voters: NodeId[] = [];
  private learners: NodeId[] = [];
  private prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout: number;
  private readonly electionTick: number;
  private readonly heartbeatTick: number;
  private readonly random: () => number;
  private readonly maxSizePerMsg: number;
  private readonly maxInflight: number;
  private readonly maxUncommittedBytes: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly unsafeLocalReads: boolean;

  private leadTransferee: NodeId | null = null;
  /** Index of the last membership change proposed; no new one until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedSize = 0;
  private pendingReads: PendingRead[] = [];
  /** ReadIndex requests that arrived before the leader committed an entry of its term (§6.4). */
  private readsAwaitingCommit: { context: string; from: NodeId }[] = [];
  /** Replication to followers is batched: proposals mark it, hasReady/ready flush it. */
  private needBcastAppend = false;
  private needBcastHeartbeat = false;

  private prevSoft: SoftState;
  private prevHard: HardState;
  private readyOutstanding = false;
  /** Highest committed index handed to the host for applying. */
  private applying: number;

  constructor(cfg: RaftConfig) {
    if (cfg.electionTick <= cfg.heartbeatTick) {
      throw new Error('raft config: electionTick must be greater than heartbeatTick');
    }
    if (cfg.heartbeatTick <= 0) throw new Error('raft config: heartbeatTick must be positive');
    this.id = cfg.id;
    this.electionTick = cfg.electionTick;
    this.heartbeatTick = cfg.heartbeatTick;
    this.random = cfg.random;
    this.maxSizePerMsg = cfg.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG;
    this.maxInflight = cfg.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    this.maxUncommittedBytes = cfg.maxUncommittedBytes ?? DEFAULT_MAX_UNCOMMITTED;
    this.preVote = cfg.preVote ?? true;
    this.checkQuorum = cfg.checkQuorum ?? true;
    this.unsafeLocalReads = cfg.unsafeLocalReads ?? false;

    this.log = new RaftLog(cfg.storage, cfg.applied ?? 0);
    const { hardState, conf } = cfg.storage.initialState();
    this.applyConfState(conf);
    if (hardState.term > 0 || hardState.vote !== null || hardState.commit > 0) {
      if (hardState.commit < this.log.committed || hardState.commit > this.log.lastIndex()) {
        // commit may lag the snapshot; never beyond the log
        if (hardState.commit > this.log.lastIndex()) {
          throw new Error(`raft: hard state commit ${hardState.commit} is beyond the last index ${this.log.lastIndex()}`);
        }
      }
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    this.applying = this.log.applied;
    this.randomizedElectionTimeout = this.electionTick;
    this.becomeFollower(this.term, null);
    this.prevSoft = this.softState();
    this.prevHard = this.hardState();
  }

  // ---------------------------------------------------------------- public API

  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  /** Start an election now (tests, or a host that wants a fast first leader). */
  campaign(): void {
    if (this.role === 'leader') return;
    this.startCampaign(this.preVote ? 'preElection' : 'election');
  }

  propose(data: Uint8Array): { index: number; term: number } {
    return this.appendProposal(EntryType.Normal, data);
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead);
    if (this.pendingConfIndex > this.log.applied) {
      throw new ProposalDroppedError('a membership change is still being applied; retry when it is done');
    }
    const isVoter = this.voters.includes(cc.node);
    const isLearner = this.learners.includes(cc.node);
    if (cc.type === 'addLearner' && isVoter) {
      throw new ProposalDroppedError(`${cc.node} is already a voter; demotion is not supported`);
    }
    if (cc.type === 'addVoter' && isVoter) {
      throw new ProposalDroppedError(`${cc.node} is already a voter`);
    }
    if (cc.type === 'removeNode') {
      if (!isVoter && !isLearner) throw new ProposalDroppedError(`${cc.node} is not a member`);
      if (isVoter && this.voters.length === 1) {
        throw new ProposalDroppedError('cannot remove the last voter');
      }
    }
    const r = this.appendProposal(EntryType.ConfChange, encodeConfChange(cc));
    this.pendingConfIndex = r.index;
    return r;
  }

  /** Called by the host when it applies a committed ConfChange entry. */
  applyConfChange(cc: ConfChange): ConfState {
    switch (cc.type) {
      case 'addVoter': {
        const pr = this.prs.get(cc.node);
        if (pr) {
          if (pr.isLearner) {
            pr.isLearner = false;
            this.learners = this.learners.filter((x) => x !== cc.node);
            this.voters.push(cc.node);
          }
        } else {
          this.voters.push(cc.node);
          this.prs.set(cc.node, this.newProgress(cc.node, false));
        }
        break;
      }
      case 'addLearner': {
        if (!this.prs.has(cc.node)) {
          this.learners.push(cc.node);
          this.prs.set(cc.node, this.newProgress(cc.node, true));
        }
        break;
      }
      case 'removeNode': {
        this.prs.delete(cc.node);
        this.voters = this.voters.filter((x) => x !== cc.node);
        this.learners = this.learners.filter((x) => x !== cc.node);
        if (this.leadTransferee === cc.node) this.leadTransferee = null;
        if (cc.node === this.id && this.role === 'leader') {
          this.becomeFollower(this.term, null);
        } else if (this.role === 'leader' && this.voters.length > 0) {
          // The quorum shrank: entries may now be committed.
          if (this.maybeCommit()) this.needBcastAppend = true;
        }
        break;
      }
    }
    return this.confState();
  }

  /**
   * Ask for a linearizable read (§6.4 ReadIndex). The answer comes back as a
   * ReadState in a later Ready; the host serves the read once applied >= index.
   */
  readIndex(context: string): void {
    if (this.unsafeLocalReads) {
      this.readStates.push({ index: this.log.committed, context });
      return;
    }
    if (this.role === 'leader') {
      this.leaderReadIndex(context, this.id);
    } else if (this.lead !== null) {
      this.send({ type: 'readIndex', to: this.lead, context });
    } else {
      throw new NotLeaderError(null);
    }
  }

  /** Thesis §3.10: hand leadership to `to` once its log is caught up. */
  transferLeadership(to: NodeId): void {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead);
    const pr = this.prs.get(to);
    if (to === this.id) return;
    if (!pr || pr.isLearner) throw new ProposalDroppedError(`${to} is not a voter`);
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    if (pr.match === this.log.lastIndex()) this.send({ type: 'timeoutNow', to });
    else this.sendAppend(to);
  }

  /** The host could not deliver to `id` (connection down): stop optimistic streaming. */
  reportUnreachable(id: NodeId): void {
    const pr = this.prs.get(id);
    if (this.role === 'leader' && pr && pr.state === 'replicate') pr.becomeProbe();
  }

  /** The host finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.prs.get(id);
    if (this.role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for the next heartbeat response before probing again
  }

  step(m: Message): void {
    // §5.1: a message with a higher term updates ours; a lower one is stale.
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTick;
        if (inLease && !m.transfer) {
          // Thesis §4.2.3: a server that hears from a current leader ignores
          // requests from a disruptive candidate (for example one returning
          // from a partition).
          return;
        }
      }
      if (m.type === 'preVote') {
        // A pre-vote does not change our term.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // A granted pre-vote carries the future term; the term moves only when we campaign.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'heartbeat' || m.type === 'app')) {
        // Tell a stale leader about the newer term so it steps down. Without
        // this, a leader cut off and healed would never learn of it when
        // PreVote keeps our term from rising past its.
        this.send({ type: 'appResp', to: m.from });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', to: m.from, reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'vote':
      case 'preVote': {
        const canVote =
          this.vote === m.from ||
          (this.vote === null && this.lead === null) ||
          (m.type === 'preVote' && m.term > this.term);
        const respType: MessageType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
        if (canVote && this.log.isUpToDate(m.index ?? 0, m.logTerm ?? 0)) {
          // §5.2, §5.4.1: grant; for a real vote, remember it (persisted before the reply is sent).
          this.send({ type: respType, to: m.from, term: m.term });
          if (m.type === 'vote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send({ type: respType, to: m.from, reject: true });
        }
        return;
      }
      default:
        break;
    }

    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'preCandidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
  }

  hasReady(): boolean {
    this.flush();
    if (this.readyOutstanding) return false;
    const ss = this.softState();
    if (ss.leader !== this.prevSoft.leader || ss.role !== this.prevSoft.role) return true;
    const hs = this.hardState();
    if (!hardStateEqual(hs, this.prevHard)) return true;
    if (this.log.unstableSnapshot) return true;
    if (this.log.hasUnstable()) return true;
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    return this.log.committed > this.applying;
  }

  ready(): Ready {
    if (this.readyOutstanding) throw new Error('raft: ready() called again before advance()');
    this.flush();
    const ss = this.softState();
    const hs = this.hardState();
    const entries = this.log.unstableEntries();
    const snapshot = this.log.unstableSnapshot ?? undefined;
    const lo = Math.max(this.applying + 1, this.log.firstIndex());
    const committedEntries = this.log.committed >= lo ? this.log.slice(lo, this.log.committed + 1) : [];
    const rd: Ready = {
      entries,
      messages: this.msgs,
      committedEntries,
      readStates: this.readStates,
      mustSync: entries.length > 0 || hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote,
    };
    if (ss.leader !== this.prevSoft.leader || ss.role !== this.prevSoft.role) rd.softState = ss;
    if (!hardStateEqual(hs, this.prevHard)) rd.hardState = hs;
    if (snapshot) {
      rd.snapshot = snapshot;
      rd.mustSync = true;
    }
    this.msgs = [];
    this.readStates = [];
    if (committedEntries.length > 0) this.applying = committedEntries[committedEntries.length - 1]!.index;
    if (snapshot && snapshot.meta.index > this.applying) this.applying = snapshot.meta.index;
    this.readyOutstanding = true;
    return rd;
  }

  /** The host has persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    if (!this.readyOutstanding) throw new Error('raft: advance() without an outstanding ready()');
    this.readyOutstanding = false;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.meta.index);
      if (rd.snapshot.meta.index > this.log.applied) this.log.applied = rd.snapshot.meta.index;
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
      if (this.role === 'leader') {
        // The leader counts itself toward a quorum only once its own copy is durable.
        const self = this.prs.get(this.id);
        if (self && self.maybeUpdate(this.stableLastIndex())) {
          if (this.maybeCommit()) this.needBcastAppend = true;
        }
      }
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      this.log.appliedTo(last.index);
      if (this.role === 'leader') {
        let freed = 0;
        for (const e of rd.committedEntries) freed += entrySize(e);
        this.uncommittedSize = Math.max(0, this.uncommittedSize - freed);
      }
    }
    this.applying = Math.max(this.applying, this.log.applied);
  }

  status(): RaftStatus {
    const progress: PeerStatus[] = [];
    if (this.role === 'leader') {
      for (const [id, pr] of this.prs) {
        progress.push({
          id,
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          isLearner: pr.isLearner,
        });
      }
    }
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      role: this.role,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      conf: this.confState(),
      leadTransferee: this.leadTransferee,
      progress,
    };
  }

  confState(): ConfState {
    return { voters: [...this.voters], learners: [...this.learners] };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  // ------------------------------------------------------------ role changes

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = null;
    this.votes.clear();
    for (const [id, pr] of this.prs) {
      const fresh = this.newProgress(id, pr.isLearner);
      if (id === this.id) fresh.match = this.stableLastIndex();
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.pendingReads = [];
    this.readsAwaitingCommit = [];
    this.needBcastAppend = false;
    this.needBcastHeartbeat = false;
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  private becomePreCandidate(): void {
    // §9.6 of the thesis: a pre-vote changes neither the term nor the vote.
    this.votes.clear();
    this.lead = null;
    this.role = 'preCandidate';
    this.resetRandomizedElectionTimeout();
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.prs.get(this.id);
    if (self) self.becomeReplicate();
    // No membership change until the no-op of this term is applied (the fix
    // for the single-server change bug noted in Ongaro's raft-dev post, 2015).
    this.pendingConfIndex = this.log.lastIndex();
    // §5.4.2/§8: commit an entry of the current term so earlier ones commit too.
    this.appendEntries([{ term: this.term, index: 0, type: EntryType.Normal, data: EMPTY }]);
    this.needBcastAppend = true;
  }

  private promotable(): boolean {
    const pr = this.prs.get(this.id);
    return pr !== undefined && !pr.isLearner && this.log.unstableSnapshot === null;
  }

  private startCampaign(kind: 'preElection' | 'election' | 'transfer'): void {
    if (!this.promotable()) return;
    let voteTerm: number;
    let type: MessageType;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = 'preVote';
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = 'vote';
    }
    this.votes.set(this.id, true);
    if (voteResult(this.voters, this.votes) === 'won') {
      // A single-voter group wins at once.
      if (kind === 'preElection') this.startCampaign('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const v of this.voters) {
      if (v === this.id) continue;
      this.send({
        type,
        to: v,
        term: voteTerm,
        index: lastIndex,
        logTerm: lastTerm,
        ...(kind === 'transfer' ? { transfer: true } : {}),
      });
    }
  }

  // ------------------------------------------------------------------ ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.startCampaign(this.preVote ? 'preElection' : 'election');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const pr of this.prs.values()) {
      // A snapshot (or its answer) may be lost; after an election timeout without
      // an answer, probe again, which resends the snapshot if it is still needed.
      if (pr.state === 'snapshot' && ++pr.snapshotTicks >= this.electionTick) pr.becomeProbe();
    }
    if (this.electionElapsed >= this.electionTick) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        // §6.2 of the thesis: a leader that has not heard from a quorum for an
        // election timeout steps down, so clients move to a working leader.
        const active = (id: NodeId) => id === this.id || this.prs.get(id)?.recentActive === true;
        if (!hasQuorum(this.voters, active)) {
          this.becomeFollower(this.term, null);
          return;
        }
        for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
      }
      if (this.leadTransferee !== null) this.leadTransferee = null; // transfer timed out
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTick + Math.floor(this.random() * this.electionTick);
  }

  // ------------------------------------------------------------ role steps

  private stepLeader(m: Message): void {
    const pr = this.prs.get(m.from);
    switch (m.type) {
      case 'appResp': {
        if (!pr) return;
        pr.recentActive = true;
        if (m.reject) {
          let hint = m.rejectHint ?? 0;
          if ((m.logTermHint ?? 0) > 0) {
            // Skip every entry of the follower's conflicting term in one step.
            hint = this.log.findConflictByTerm(hint, m.logTermHint!).index;
          }
          if (pr.maybeDecrTo(m.index ?? 0, hint)) {
            if (pr.state === 'replicate') pr.becomeProbe();
            this.sendAppend(m.from);
          }
          return;
        }
        const wasPaused = pr.isPaused();
        if (pr.maybeUpdate(m.index ?? 0)) {
          if (pr.state === 'probe') pr.becomeReplicate();
          else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
            pr.becomeProbe();
            pr.becomeReplicate();
          } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index ?? 0);

          if (this.maybeCommit()) this.needBcastAppend = true;
          else if (wasPaused) this.sendAppend(m.from);
          while (pr.state === 'replicate' && this.sendAppend(m.from, false)) {
            // keep the pipeline full
          }
          if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
            this.send({ type: 'timeoutNow', to: m.from });
          }
        }
        return;
      }
      case 'heartbeatResp': {
        if (!pr) return;
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        if (m.context) this.ackRead(m.context, m.from);
        return;
      }
      case 'readIndex': {
        if (m.context !== undefined) this.leaderReadIndex(m.context, m.from);
        return;
      }
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const myResp: MessageType = this.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case 'preVoteResp':
      case 'voteResp': {
        if (m.type !== myResp) return;
        this.votes.set(m.from, !m.reject);
        const r = voteResult(this.voters, this.votes);
        if (r === 'won') {
          if (this.role === 'preCandidate') this.startCampaign('election');
          else {
            this.becomeLeader();
          }
        } else if (r === 'lost') {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case 'timeoutNow':
        // Thesis §3.10: the leader asks us to start an election immediately.
        this.startCampaign('transfer');
        return;
      case 'readIndexResp':
        if (m.context !== undefined) this.readStates.push({ index: m.index ?? 0, context: m.context });
        return;
      default:
        return;
    }
  }

  // ------------------------------------------------------- follower handlers

  private handleAppend(m: Message): void {
    const prevIndex = m.index ?? 0;
    if (prevIndex < this.log.committed) {
      // Already committed here: tell the leader how far we are.
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(prevIndex, m.logTerm ?? 0, m.commit ?? 0, m.entries ?? []);
    if (lastNew !== null) {
      this.send({ type: 'appResp', to: m.from, index: lastNew });
      return;
    }
    // §5.3 consistency check failed. Hint where our log may match the leader's.
    const hint = this.log.findConflictByTerm(Math.min(prevIndex, this.log.lastIndex()), m.logTerm ?? 0);
    this.send({
      type: 'appResp',
      to: m.from,
      index: prevIndex,
      reject: true,
      rejectHint: hint.index,
      logTermHint: hint.term,
    });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit ?? 0, this.log.lastIndex()));
    this.send({ type: 'heartbeatResp', to: m.from, ...(m.context !== undefined ? { context: m.context } : {}) });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    if (this.restore(s)) {
      this.send({ type: 'appResp', to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
    }
  }

  /** §7: install a snapshot unless our log already covers it. */
  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already have the entry: just move commit forward.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.applyConfState(s.meta.conf);
    return true;
  }

  // ---------------------------------------------------------- leader helpers

  private appendProposal(type: EntryType, data: Uint8Array): { index: number; term: number } {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead);
    if (this.leadTransferee !== null) {
      throw new ProposalDroppedError(`leadership is being transferred to ${this.leadTransferee}`);
    }
    if (!this.prs.has(this.id)) throw new ProposalDroppedError('this node was removed from the group');
    const size = data.byteLength + 24;
    if (this.uncommittedSize > 0 && this.uncommittedSize + size > this.maxUncommittedBytes) {
      throw new ProposalDroppedError('too many uncommitted bytes at the leader; slow down');
    }
    const index = this.appendEntries([{ term: this.term, index: 0, type, data }]);
    this.uncommittedSize += size;
    this.needBcastAppend = true;
    return { index, term: this.term };
  }

  /** Stamp term/index on new leader entries and append them (unstable until persisted). */
  private appendEntries(ents: Entry[]): number {
    let li = this.log.lastIndex();
    for (const e of ents) {
      e.term = this.term;
      e.index = ++li;
    }
    return this.log.append(ents);
  }

  private maybeCommit(): boolean {
    const idx = committedIndex(this.voters, (id) => this.prs.get(id)?.match ?? 0);
    if (idx === Number.MAX_SAFE_INTEGER) return false;
    const committed = this.log.maybeCommit(idx, this.term);
    if (committed && this.readsAwaitingCommit.length > 0) {
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const r of waiting) this.leaderReadIndex(r.context, r.from);
    }
    return committed;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private leaderReadIndex(context: string, from: NodeId): void {
    if (this.voters.length === 1 && this.voters[0] === this.id) {
      this.respondRead(this.log.committed, context, from);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // §6.4 step 1: the leader's commit index is only known current once it
      // has committed an entry of its own term.
      this.readsAwaitingCommit.push({ context, from });
      return;
    }
    const acks = new Set<NodeId>([this.id]);
    this.pendingReads.push({ index: this.log.committed, context, from, acks });
    this.needBcastHeartbeat = true;
  }

  private ackRead(context: string, from: NodeId): void {
    const at = this.pendingReads.findIndex((r) => r.context === context);
    if (at < 0) return;
    const read = this.pendingReads[at]!;
    if (!this.voters.includes(from)) return;
    read.acks.add(from);
    let n = 0;
    for (const v of this.voters) if (read.acks.has(v)) n++;
    if (n < quorumSize(this.voters.length)) return;
    // A quorum confirmed our leadership after every earlier read was queued too.
    const released = this.pendingReads.splice(0, at + 1);
    for (const r of released) this.respondRead(r.index, r.context, r.from);
  }

  private respondRead(index: number, context: string, from: NodeId): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: 'readIndexResp', to: from, index, context });
  }

  /** Send pending work batched since the last Ready: appends and read heartbeats. */
  private flush(): void {
    if (this.role !== 'leader') {
      this.needBcastAppend = false;
      this.needBcastHeartbeat = false;
      return;
    }
    if (this.needBcastAppend) {
      this.needBcastAppend = false;
      this.bcastAppend();
    }
    if (this.needBcastHeartbeat) {
      this.needBcastHeartbeat = false;
      this.bcastHeartbeat();
    }
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) {
      if (id === this.id) continue;
      const pr = this.prs.get(id)!;
      if (pr.state === 'replicate') {
        // Stream in messages of at most maxSizePerMsg until caught up or the window is full.
        let sent = this.sendAppend(id, true);
        while (sent && pr.state === 'replicate' && pr.next <= this.log.lastIndex()) {
          sent = this.sendAppend(id, false);
        }
      } else {
        this.sendAppend(id, true);
      }
    }
  }

  private bcastHeartbeat(): void {
    const ctx = this.pendingReads.length > 0 ? this.pendingReads[this.pendingReads.length - 1]!.context : undefined;
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: 'heartbeat', to: id, commit, ...(ctx !== undefined ? { context: ctx } : {}) });
    }
  }

  /**
   * Send entries (or a snapshot) to `to`. Returns true if a message was sent.
   * With sendIfEmpty=false nothing is sent when there are no new entries.
   */
  private sendAppend(to: NodeId, sendIfEmpty = true): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number | undefined;
    let ents: Entry[];
    try {
      prevTerm = this.log.termOrThrow(prevIndex);
      ents = pr.next <= this.log.lastIndex() ? this.log.entriesFrom(pr.next, this.maxSizePerMsg) : [];
    } catch (e) {
      if (e instanceof CompactedError) return this.sendSnapshot(to, pr);
      throw e;
    }
    if (prevTerm === undefined) {
      // next is beyond our log (stale progress): probe from our end.
      pr.next = this.log.lastIndex() + 1;
      return false;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: 'app',
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    });
    const last = ents.length > 0 ? ents[ents.length - 1]!.index : prevIndex;
    pr.sentEntries(last, ents.length);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // do not ship a snapshot to a node that may be down
    const snap = this.log.snapshot();
    if (snap.meta.index === 0) return false;
    this.send({ type: 'snap', to, snapshot: snap });
    pr.becomeSnapshot(snap.meta.index);
    return true;
  }

  // ------------------------------------------------------------------ misc

  private send(m: Partial<Message> & { type: MessageType; to: NodeId }): void {
    const msg: Message = { ...m, from: this.id, term: m.term ?? this.term } as Message;
    this.msgs.push(msg);
  }

  private newProgress(id: NodeId, isLearner: boolean): Progress {
    const pr = new Progress(this.log.lastIndex() + 1, this.maxInflight, isLearner);
    if (id === this.id) pr.match = this.stableLastIndex();
    return pr;
  }

  /** The last index that is durable on this node and still part of the log. */
  private stableLastIndex(): number {
    const entries = this.log.unstableEntries();
    if (entries.length > 0) return entries[0]!.index - 1;
    if (this.log.unstableSnapshot) return this.log.unstableSnapshot.meta.index - 1;
    return this.log.lastIndex();
  }

  private applyConfState(conf: ConfState): void {
    this.voters = [...conf.voters];
    this.learners = [...conf.learners];
    this.prs.clear();
    for (const v of this.voters) this.prs.set(v, this.newProgress(v, false));
    for (const l of this.learners) this.prs.set(l, this.newProgress(l, true));
  }
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
