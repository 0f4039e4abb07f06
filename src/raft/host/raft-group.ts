// The host of one Raft group on a real node: it owns the timers, the durable
// storage and the apply loop, and turns the core's Ready batches into disk
// writes, network sends and state-machine applications, in that order.
//
// Proposals made while a batch is being fsynced pile up in the core and go
// out together in the next batch: group commit, one fsync for many writes.
import { bootstrapLog } from '../core/bootstrap.js';
import { decodeConfChange } from '../core/conf-change.js';
import { Raft, type RaftStatus } from '../core/raft.js';
import {
  EntryType,
  NotLeaderError,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
  type Snapshot,
} from '../core/types.js';
import { DiskStorage } from '../storage/disk-storage.js';
import type { FileSystem } from '../storage/file-system.js';
import { MemoryLog, emptySnapshot } from '../storage/memory-log.js';
import { realFileSystem } from '../storage/real-file-system.js';
import type { StateMachine } from './state-machine.js';

export interface GroupLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

const silentLogger: GroupLogger = { info() {}, warn() {}, error() {} };

export interface RaftTiming {
  /** Milliseconds per tick. */
  tickMs: number;
  /** Election timeout in ticks (randomized in [e, 2e)). */
  electionTick: number;
  heartbeatTick: number;
}

/** 25 ms ticks: heartbeats every 50 ms, elections after 250-500 ms of silence. */
export const DEFAULT_TIMING: RaftTiming = { tickMs: 25, electionTick: 10, heartbeatTick: 2 };

export interface RaftGroupOptions<R> {
  /** Group id, unique within the process (multiplexed over one transport). */
  group: string;
  id: NodeId;
  dir: string;
  fs?: FileSystem;
  stateMachine: StateMachine<R>;
  send: (to: NodeId, group: string, msg: Message) => void;
  /** Used only when the storage is empty: start a new group with these voters. Omit to join an existing group. */
  bootstrap?: { voters: NodeId[]; addresses?: Record<NodeId, string> };
  timing?: Partial<RaftTiming>;
  /** Take a snapshot after this many applied entries (default 20,000). */
  snapshotEntries?: number;
  /** Entries kept behind a snapshot so slow followers catch up from the log (default 2,000). */
  keepEntries?: number;
  segmentBytes?: number;
  logger?: GroupLogger;
  random?: () => number;
  maxSizePerMsg?: number;
  maxInflight?: number;
  /** Called when the leader (or this node's role) changes. */
  onLeaderChange?: (leader: NodeId | null, term: number) => void;
  /** Called after a membership change is applied, with the new membership and addresses. */
  onConfChange?: (conf: ConfState, cc: ConfChange, addresses: Map<NodeId, string>) => void;
  /** Called after a batch of entries was applied. */
  onApplied?: (index: number) => void;
}

export class ProposalTimeoutError extends Error {
  constructor(ms: number) {
    super(`the write was proposed but not applied within ${ms} ms; its outcome is unknown`);
    this.name = 'ProposalTimeoutError';
  }
}

export class ProposalLostError extends Error {
  constructor(index: number) {
    super(`the write proposed at index ${index} was replaced by a new leader's entry; it was not applied`);
    this.name = 'ProposalLostError';
  }
}

export class GroupStoppedError extends Error {
  constructor(group: string) {
    super(`raft group ${group} stopped`);
    this.name = 'GroupStoppedError';
  }
}

export class ReadTimeoutError extends Error {
  constructor(ms: number) {
    super(`could not confirm leadership for a linearizable read within ${ms} ms`);
    this.name = 'ReadTimeoutError';
  }
}

interface PendingProposal {
  term: number;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface PendingRead {
  index: number | null;
  resolve: (index: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class RaftGroup<R = unknown> {
  readonly group: string;
  readonly id: NodeId;
  private raft!: Raft;
  private storage!: DiskStorage;
  private mem!: MemoryLog;
  private readonly sm: StateMachine<R>;
  private readonly timing: RaftTiming;
  private readonly log: GroupLogger;
  private ticker: NodeJS.Timeout | null = null;
  private loopScheduled = false;
  private looping = false;
  private stopped = false;
  private started = false;
  private proposals = new Map<number, PendingProposal>();
  private reads = new Map<string, PendingRead>();
  private readSeq = 0;
  private appliedSinceSnapshot = 0;
  private readonly addresses = new Map<NodeId, string>();
  private lastLeader: NodeId | null = null;
  private fatal: Error | null = null;
  /** Counters for /metrics. */
  readonly counters = { proposals: 0, applied: 0, readIndex: 0, readies: 0, fsyncs: 0, snapshots: 0, leaderChanges: 0 };

  constructor(private readonly opts: RaftGroupOptions<R>) {
    this.group = opts.group;
    this.id = opts.id;
    this.sm = opts.stateMachine;
    this.timing = { ...DEFAULT_TIMING, ...(opts.timing ?? {}) };
    this.log = opts.logger ?? silentLogger;
  }

  /** Open storage, recover, and start ticking. */
  start(): void {
    if (this.started) throw new Error('raft group: already started');
    this.started = true;
    const fs = this.opts.fs ?? realFileSystem;
    this.storage = DiskStorage.open(fs, this.opts.dir, this.opts.segmentBytes ? { segmentBytes: this.opts.segmentBytes } : {});
    let rec = this.storage.recovered;
    if (rec.tornTail) this.log.warn({ group: this.group, ...rec.tornTail }, 'cut a torn tail off the raft log');
    const empty = rec.snapshot === null && rec.entries.length === 0 && rec.hardState.term === 0;
    if (empty && this.opts.bootstrap) {
      const b = bootstrapLog(this.opts.bootstrap.voters, this.opts.bootstrap.addresses ?? {});
      this.storage.append(b.entries);
      this.storage.setHardState(b.hardState);
      this.storage.sync();
      rec = { hardState: b.hardState, snapshot: null, entries: b.entries, tornTail: null };
    }
    const snap: Snapshot = rec.snapshot ?? emptySnapshot();
    this.mem = new MemoryLog(snap);
    this.mem.append(rec.entries.filter((e) => e.index > snap.meta.index));
    this.mem.setHardState(rec.hardState);
    // Recovered entries point into the segment read buffers; let them go once copied into the log.
    this.storage.releaseRecovered();
    if (snap.data.byteLength > 0) this.sm.restore(snap.data);
    for (const [id, addr] of Object.entries(snap.meta.addresses ?? {})) this.addresses.set(id, addr);
    for (const [id, addr] of Object.entries(this.opts.bootstrap?.addresses ?? {})) {
      if (!this.addresses.has(id)) this.addresses.set(id, addr);
    }
    this.raft = new Raft({
      id: this.id,
      electionTick: this.timing.electionTick,
      heartbeatTick: this.timing.heartbeatTick,
      storage: this.mem,
      applied: snap.meta.index,
      random: this.opts.random ?? Math.random,
      preVote: true,
      checkQuorum: true,
      ...(this.opts.maxSizePerMsg ? { maxSizePerMsg: this.opts.maxSizePerMsg } : {}),
      ...(this.opts.maxInflight ? { maxInflight: this.opts.maxInflight } : {}),
    });
    this.ticker = setInterval(() => this.tick(), this.timing.tickMs);
    this.ticker.unref?.();
    this.scheduleLoop();
  }

  private tick(): void {
    if (this.stopped) return;
    this.raft.tick();
    this.scheduleLoop();
  }

  /** A message for this group arrived from the transport. */
  step(msg: Message): void {
    if (this.stopped || !this.started) return;
    this.raft.step(msg);
    this.scheduleLoop();
  }

  reportUnreachable(peer: NodeId): void {
    if (this.stopped || !this.started) return;
    this.raft.reportUnreachable(peer);
  }

  /**
   * Replicate a command; resolves with the state machine's result once it is
   * applied here. Throws NotLeaderError (with the leader's id when known) on
   * a follower. On timeout the outcome is unknown (the write may still apply).
   */
  propose(data: Uint8Array, timeoutMs = 10_000): Promise<R> {
    this.ensureRunning();
    const { index, term } = this.raft.propose(data);
    this.counters.proposals++;
    return this.waitForIndex(index, term, timeoutMs) as Promise<R>;
  }

  /** Propose a single-server membership change; resolves with the new membership once applied. */
  changeMembership(cc: ConfChange, timeoutMs = 10_000): Promise<ConfState> {
    this.ensureRunning();
    const { index, term } = this.raft.proposeConfChange(cc);
    return this.waitForIndex(index, term, timeoutMs).then(() => this.raft.confState());
  }

  private waitForIndex(index: number, term: number, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proposals.delete(index);
        reject(new ProposalTimeoutError(timeoutMs));
      }, timeoutMs);
      this.proposals.set(index, { term, resolve, reject, timer });
      this.scheduleLoop();
    });
  }

  /**
   * A linearizable read barrier (ReadIndex, thesis §6.4): resolves once this
   * node has applied everything committed when the read was issued, with a
   * quorum confirming the leader in between. Works on followers too.
   */
  readBarrier(timeoutMs = 5_000): Promise<number> {
    this.ensureRunning();
    const ctx = `${this.id}:${++this.readSeq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(ctx);
        reject(new ReadTimeoutError(timeoutMs));
      }, timeoutMs);
      this.reads.set(ctx, { index: null, resolve, reject, timer });
      try {
        this.raft.readIndex(ctx);
      } catch (e) {
        clearTimeout(timer);
        this.reads.delete(ctx);
        reject(e as Error);
        return;
      }
      this.counters.readIndex++;
      this.scheduleLoop();
    });
  }

  transferLeadership(to: NodeId): void {
    this.ensureRunning();
    this.raft.transferLeadership(to);
    this.scheduleLoop();
  }

  /** Start an election now (used right after bootstrap so a cluster gets a leader sooner). */
  campaign(): void {
    this.ensureRunning();
    this.raft.campaign();
    this.scheduleLoop();
  }

  status(): RaftStatus & { group: string; addresses: Record<NodeId, string> } {
    return { ...this.raft.status(), group: this.group, addresses: Object.fromEntries(this.addresses) };
  }

  get isLeader(): boolean {
    return this.started && !this.stopped && this.raft.role === 'leader';
  }

  get leader(): NodeId | null {
    return this.started ? this.raft.lead : null;
  }

  get term(): number {
    return this.started ? this.raft.term : 0;
  }

  get appliedIndex(): number {
    return this.started ? this.raft.log.applied : 0;
  }

  get commitIndex(): number {
    return this.started ? this.raft.log.committed : 0;
  }

  address(id: NodeId): string | undefined {
    return this.addresses.get(id);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    const err = new GroupStoppedError(this.group);
    for (const p of this.proposals.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.proposals.clear();
    for (const r of this.reads.values()) {
      clearTimeout(r.timer);
      r.reject(err);
    }
    this.reads.clear();
    if (this.started && !this.looping) this.storage.close();
  }

  private ensureRunning(): void {
    if (this.fatal) throw this.fatal;
    if (!this.started || this.stopped) throw new GroupStoppedError(this.group);
  }

  private scheduleLoop(): void {
    if (this.loopScheduled || this.looping || this.stopped) return;
    this.loopScheduled = true;
    setImmediate(() => {
      this.loopScheduled = false;
      void this.runLoop();
    });
  }

  private async runLoop(): Promise<void> {
    if (this.looping || this.stopped) return;
    this.looping = true;
    try {
      while (!this.stopped && this.raft.hasReady()) {
        const rd = this.raft.ready();
        this.counters.readies++;
        this.persist(rd);
        // A leader's appends and heartbeats do not depend on its own disk
        // (thesis §10.2.1): it counts itself toward a quorum only once its
        // entries are durable (see Raft.advance). Sending them before our
        // fsync overlaps the leader's and the followers' fsyncs. Everything
        // that promises something (votes, acknowledgements) waits.
        const early = rd.messages.filter(sendsBeforePersist);
        for (const m of early) this.opts.send(m.to, this.group, m);
        if (rd.mustSync) {
          this.counters.fsyncs++;
          await this.storage.syncAsync();
        }
        if (this.stopped) break;
        this.afterPersist(rd, early.length === 0 ? rd.messages : rd.messages.filter((m) => !sendsBeforePersist(m)));
      }
    } catch (e) {
      // A storage failure leaves the node unable to keep its promises: stop it loudly.
      this.fatal = e as Error;
      this.log.error({ group: this.group, err: String(e) }, 'raft group failed; stopping');
      this.stop();
      throw e;
    } finally {
      this.looping = false;
      if (this.stopped) {
        try {
          this.storage.close();
        } catch {
          // already closed
        }
      }
    }
  }

  private persist(rd: Ready): void {
    if (rd.snapshot) this.storage.saveSnapshot(rd.snapshot);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
  }

  private afterPersist(rd: Ready, messages: Message[]): void {
    if (rd.snapshot) {
      this.mem.applySnapshot(rd.snapshot);
      this.sm.restore(rd.snapshot.data);
      for (const [id, addr] of Object.entries(rd.snapshot.meta.addresses ?? {})) this.addresses.set(id, addr);
      this.failProposalsUpTo(rd.snapshot.meta.index);
    }
    if (rd.entries.length > 0) this.mem.append(rd.entries);
    if (rd.hardState) this.mem.setHardState(rd.hardState);
    for (const m of messages) this.opts.send(m.to, this.group, m);
    for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.context);
      if (r) r.index = rs.index;
    }
    this.raft.advance(rd);
    if (rd.committedEntries.length > 0) {
      this.opts.onApplied?.(rd.committedEntries[rd.committedEntries.length - 1]!.index);
    }
    this.serveReads();
    this.maybeSnapshot();
    if (rd.softState && rd.softState.leader !== this.lastLeader) {
      this.lastLeader = rd.softState.leader;
      this.counters.leaderChanges++;
      this.log.info({ group: this.group, leader: rd.softState.leader, term: this.raft.term }, 'leader changed');
      this.opts.onLeaderChange?.(rd.softState.leader, this.raft.term);
    }
  }

  private applyEntry(e: Entry): void {
    let result: unknown;
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      const conf = this.raft.applyConfChange(cc);
      if (cc.type === 'removeNode') this.addresses.delete(cc.node);
      else if (cc.address) this.addresses.set(cc.node, cc.address);
      this.log.info({ group: this.group, change: cc, conf }, 'membership changed');
      this.opts.onConfChange?.(conf, cc, this.addresses);
      result = conf;
    } else if (e.data.byteLength > 0) {
      result = this.sm.apply(e.data, e.index);
    }
    this.counters.applied++;
    this.appliedSinceSnapshot++;
    const p = this.proposals.get(e.index);
    if (p) {
      this.proposals.delete(e.index);
      clearTimeout(p.timer);
      if (p.term === e.term) p.resolve(result);
      else p.reject(new ProposalLostError(e.index));
    }
  }

  private failProposalsUpTo(index: number): void {
    for (const [i, p] of this.proposals) {
      if (i <= index) {
        // Installed a snapshot over it: whether it was ours is unknown here.
        this.proposals.delete(i);
        clearTimeout(p.timer);
        p.reject(new ProposalTimeoutError(0));
      }
    }
  }

  private serveReads(): void {
    if (this.reads.size === 0) return;
    const applied = this.raft.log.applied;
    for (const [ctx, r] of this.reads) {
      if (r.index !== null && applied >= r.index) {
        this.reads.delete(ctx);
        clearTimeout(r.timer);
        r.resolve(r.index);
      }
    }
  }

  private maybeSnapshot(): void {
    const every = this.opts.snapshotEntries ?? 20_000;
    if (this.appliedSinceSnapshot < every) return;
    const applied = this.raft.log.applied;
    if (applied <= this.mem.snapshot().meta.index) return;
    const snap = this.mem.createSnapshot(applied, this.raft.confState(), this.sm.snapshot(), Object.fromEntries(this.addresses));
    this.storage.saveSnapshot(snap);
    const keep = this.opts.keepEntries ?? 2_000;
    const upTo = applied - keep;
    if (upTo >= this.mem.firstIndex()) {
      this.mem.compact(upTo);
      this.storage.compact(upTo);
    }
    this.appliedSinceSnapshot = 0;
    this.counters.snapshots++;
  }

  /** True if `err` means "ask the leader instead", with the leader's id if known. */
  static leaderHint(err: unknown): { notLeader: true; leader: NodeId | null } | { notLeader: false } {
    if (err instanceof NotLeaderError) return { notLeader: true, leader: err.leader };
    return { notLeader: false };
  }
}

/** Leader-only messages that promise nothing about this node's disk. */
export function sendsBeforePersist(m: Message): boolean {
  return m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap' || m.type === 'timeoutNow';
}
