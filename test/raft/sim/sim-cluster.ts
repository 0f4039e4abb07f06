// A seeded, deterministic simulation of a Raft cluster: real Raft cores and a
// real KV state machine, a simulated network (loss, duplication, reordering,
// delay, symmetric and one-way partitions), simulated disks that lose what
// was not fsynced (with torn writes), crashes and restarts, membership
// changes, leadership transfers and snapshots while faults run. Every event
// checks the safety invariants; the client history is returned for the
// linearizability checker. Nothing here reads the wall clock or Math.random.
import { bootstrapLog } from '../../../src/raft/core/bootstrap.js';
import { decodeConfChange } from '../../../src/raft/core/conf-change.js';
import { Raft } from '../../../src/raft/core/raft.js';
import {
  EntryType,
  NotLeaderError,
  ProposalDroppedError,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Snapshot,
} from '../../../src/raft/core/types.js';
import {
  KvStateMachine,
  encodeKvCommand,
  type KvCommand,
  type KvResult,
} from '../../../src/raft/kv/kv-state-machine.js';
import { sendsBeforePersist } from '../../../src/raft/host/raft-group.js';
import { MemoryLog, emptySnapshot } from '../../../src/raft/storage/memory-log.js';
import { EventQueue } from './event-queue.js';
import { Rng } from './rng.js';
import { ModelDisk, type SimDisk } from './sim-disk.js';

export class InvariantViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantViolation';
  }
}

export interface SimOptions {
  seed: number;
  voters?: number;
  /** Extra nodes that membership changes may add. */
  spares?: number;
  faultMs?: number;
  quiesceMs?: number;
  tickMs?: number;
  electionTick?: number;
  heartbeatTick?: number;
  clients?: number;
  keys?: number;
  tornWrites?: boolean;
  /** Take a snapshot when this many entries were applied since the last one (0 = never). */
  snapshotEvery?: number;
  /** Deliberately broken variant for checker tests: serve reads without ReadIndex. */
  unsafeLocalReads?: boolean;
  /** 'kv': random gets/puts/cas/deletes/txns; 'bank': transfers between accounts (keys = accounts). */
  workload?: 'kv' | 'bank';
  /** Disk implementation factory (default: the durability model). */
  makeDisk?: (id: NodeId) => SimDisk;
  faults?: Partial<FaultRates>;
  trace?: (line: string) => void;
}

export interface FaultRates {
  crash: number;
  partition: number;
  oneWay: number;
  heal: number;
  loss: number;
  duplicate: number;
  membership: number;
  transfer: number;
}

const DEFAULT_FAULTS: FaultRates = {
  crash: 0.2,
  partition: 0.15,
  oneWay: 0.1,
  heal: 0.25,
  loss: 0.1,
  duplicate: 0.05,
  membership: 0.1,
  transfer: 0.05,
};

/** One client operation in the recorded history. */
export interface HistoryOp {
  client: number;
  input: KvCommand;
  /** Undefined when the outcome is unknown (crash or timeout after the write was proposed). */
  output?: KvResult;
  call: number;
  /** Infinity when the outcome is unknown. */
  ret: number;
}

export interface SimResult {
  seed: number;
  history: HistoryOp[];
  bankHistory: BankHistoryOp[];
  bankInitialBalances: Record<string, number>;
  stats: {
    events: number;
    virtualMs: number;
    committed: number;
    leaderChanges: number;
    crashes: number;
    snapshotsSent: number;
    confChanges: number;
    acknowledgedWrites: number;
    unknownWrites: number;
    reads: number;
  };
}

interface PendingWrite {
  index: number;
  term: number;
  /** result = applied; null = another entry took the index; undefined = unknown. */
  settle: (result: KvResult | null | undefined) => void;
}

interface PendingRead {
  key: string;
  index: number | null;
  settle: (r: { value: string | null } | null) => void;
}

export const BANK_OPENING_BALANCE = 100;

export interface BankHistoryOp {
  client: number;
  input: { type: 'transfer'; from: string; to: string; amount: number } | { type: 'read' };
  output?: { type: 'transfer'; result: 'ok' | 'insufficient' } | { type: 'read'; balances: Record<string, number> };
  call: number;
  ret: number;
}

class SimNode {
  alive = false;
  incarnation = 0;
  raft!: Raft;
  mem!: MemoryLog;
  kv!: KvStateMachine;
  persisting = false;
  writes = new Map<number, PendingWrite>();
  reads = new Map<string, PendingRead>();
  lastTerm = 0;
  /** Highest term made durable by a sync: a restart must recover at least this. */
  syncedTerm = 0;
  lastCommit = 0;
  lastApplied = 0;
  lastRole = 'follower';
  appliedSinceSnapshot = 0;

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
  ) {}
}

function fnv(data: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) {
    h ^= data[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${h.toString(16)}/${data.length}`;
}

export class SimCluster {
  readonly rng: Rng;
  private readonly q = new EventQueue();
  now = 0;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly opts: Required<Omit<SimOptions, 'makeDisk' | 'trace' | 'faults'>> & { faults: FaultRates };
  private readonly trace?: (line: string) => void;

  // network state
  private cuts = new Set<string>();
  private lossRate = 0;
  private dupRate = 0;
  private faultsOn = true;

  // invariant state
  private leaderOfTerm = new Map<number, NodeId>();
  private entryAt = new Map<string, { hash: string; prevTerm: number }>();
  private appliedAt = new Map<number, { term: number; hash: string }>();
  private maxApplied = 0;

  // workload
  private history: HistoryOp[] = [];
  private bankHistory: BankHistoryOp[] = [];
  private readCounter = 0;
  private valueCounter = 0;
  private stats: SimResult['stats'] = {
    events: 0,
    virtualMs: 0,
    committed: 0,
    leaderChanges: 0,
    crashes: 0,
    snapshotsSent: 0,
    confChanges: 0,
    acknowledgedWrites: 0,
    unknownWrites: 0,
    reads: 0,
  };
  private pendingPromotion: NodeId | null = null;

  constructor(options: SimOptions) {
    this.rng = new Rng(options.seed);
    this.trace = options.trace;
    this.opts = {
      seed: options.seed,
      voters: options.voters ?? 3,
      spares: options.spares ?? 1,
      faultMs: options.faultMs ?? 2000,
      quiesceMs: options.quiesceMs ?? 2000,
      tickMs: options.tickMs ?? 10,
      electionTick: options.electionTick ?? 10,
      heartbeatTick: options.heartbeatTick ?? 1,
      clients: options.clients ?? 4,
      keys: options.keys ?? 3,
      tornWrites: options.tornWrites ?? true,
      snapshotEvery: options.snapshotEvery ?? 0,
      unsafeLocalReads: options.unsafeLocalReads ?? false,
      workload: options.workload ?? 'kv',
      faults: { ...DEFAULT_FAULTS, ...(options.faults ?? {}) },
    };
    const makeDisk = options.makeDisk ?? (() => new ModelDisk());
    const voters = Array.from({ length: this.opts.voters }, (_, i) => `n${i + 1}`);
    const spares = Array.from({ length: this.opts.spares }, (_, i) => `n${this.opts.voters + i + 1}`);
    const boot = bootstrapLog(voters);
    for (const id of voters) {
      const n = new SimNode(id, makeDisk(id));
      // Bootstrap: the initial membership as committed entries, durable from the start.
      n.disk.append(boot.entries);
      n.disk.setHardState(boot.hardState);
      n.disk.sync();
      this.nodes.set(id, n);
      this.start(n);
    }
    for (const id of spares) {
      const n = new SimNode(id, makeDisk(id));
      this.nodes.set(id, n);
    }
  }

  private log(line: string): void {
    this.trace?.(`[${this.now.toFixed(2)}] ${line}`);
  }

  private fail(msg: string): never {
    throw new InvariantViolation(`seed=${this.opts.seed} t=${this.now.toFixed(2)}ms: ${msg}`);
  }

  private at(delay: number, run: () => void): void {
    this.q.push(this.now + delay, run);
  }

  // ------------------------------------------------------------ node lifecycle

  private start(n: SimNode): void {
    const rec = n.disk.recover();
    const snap: Snapshot = rec.snapshot ?? emptySnapshot({ voters: [], learners: [] });
    n.mem = new MemoryLog(snap);
    n.mem.append(rec.entries.filter((e) => e.index > snap.meta.index));
    const hs = { ...rec.hardState };
    if (hs.commit > n.mem.lastIndex()) {
      this.fail(`${n.id} recovered commit ${hs.commit} beyond its durable log (last ${n.mem.lastIndex()})`);
    }
    if (hs.term < n.syncedTerm) {
      this.fail(`${n.id} recovered term ${hs.term} lower than the synced term ${n.syncedTerm}`);
    }
    n.mem.setHardState(hs);
    n.kv = new KvStateMachine();
    if (snap.data.byteLength > 0) n.kv.restore(snap.data);
    n.raft = new Raft({
      id: n.id,
      electionTick: this.opts.electionTick,
      heartbeatTick: this.opts.heartbeatTick,
      storage: n.mem,
      applied: snap.meta.index,
      random: () => this.rng.next(),
      preVote: true,
      checkQuorum: true,
      unsafeLocalReads: this.opts.unsafeLocalReads,
      maxSizePerMsg: 4096,
      maxInflight: 8,
    });
    n.incarnation++;
    n.alive = true;
    n.persisting = false;
    n.lastCommit = n.raft.log.committed;
    n.lastApplied = n.raft.log.applied;
    n.lastTerm = n.raft.term;
    n.lastRole = 'follower';
    n.appliedSinceSnapshot = 0;
    const inc = n.incarnation;
    const tick = () => {
      if (!n.alive || n.incarnation !== inc) return;
      n.raft.tick();
      this.pump(n);
      this.at(this.opts.tickMs, tick);
    };
    this.at(this.rng.next() * this.opts.tickMs, tick);
    this.pump(n);
  }

  private crash(n: SimNode): void {
    if (!n.alive) return;
    this.log(`CRASH ${n.id}`);
    this.stats.crashes++;
    n.alive = false;
    n.disk.crash(this.rng, this.opts.tornWrites);
    // Clients waiting on this node do not know what happened to their writes.
    for (const w of n.writes.values()) w.settle(undefined);
    n.writes.clear();
    for (const r of n.reads.values()) r.settle(null);
    n.reads.clear();
  }

  // ------------------------------------------------------------------- host

  /** Process one Ready: persist, then (after the fsync) send, apply, advance. */
  private pump(n: SimNode): void {
    if (!n.alive || n.persisting) return;
    this.checkNodeInvariants(n);
    if (!n.raft.hasReady()) return;
    const rd = n.raft.ready();
    const inc = n.incarnation;
    if (rd.snapshot) n.disk.saveSnapshot(rd.snapshot);
    n.disk.append(rd.entries);
    if (rd.hardState) n.disk.setHardState(rd.hardState);
    n.persisting = true;
    // As the real host does: leader appends/heartbeats go out before the fsync.
    for (const m of rd.messages) if (sendsBeforePersist(m)) this.send(m);
    const finish = () => {
      if (!n.alive || n.incarnation !== inc) return;
      if (rd.mustSync) n.disk.sync();
      // now durable: visible to the core as stable storage
      if (rd.snapshot) {
        n.mem.applySnapshot(rd.snapshot);
        n.kv = new KvStateMachine();
        if (rd.snapshot.data.byteLength > 0) n.kv.restore(rd.snapshot.data);
      }
      if (rd.entries.length > 0) {
        n.mem.append(rd.entries);
        this.recordEntries(n, rd.entries);
      }
      if (rd.hardState) {
        n.mem.setHardState(rd.hardState);
        if (rd.mustSync) n.syncedTerm = Math.max(n.syncedTerm, rd.hardState.term);
      }
      for (const m of rd.messages) if (!sendsBeforePersist(m)) this.send(m);
      for (const e of rd.committedEntries) this.apply(n, e);
      for (const rs of rd.readStates) {
        const r = n.reads.get(rs.context);
        if (r) r.index = rs.index;
      }
      n.raft.advance(rd);
      this.serveReads(n);
      this.maybeSnapshot(n);
      n.persisting = false;
      this.checkNodeInvariants(n);
      this.at(0, () => this.pump(n));
    };
    if (rd.mustSync) this.at(0.05 + this.rng.next() * 0.5, finish);
    else finish();
  }

  private apply(n: SimNode, e: Entry): void {
    // State machine safety: no two nodes apply different entries at one index.
    const h = fnv(e.data);
    const prev = this.appliedAt.get(e.index);
    if (prev && (prev.term !== e.term || prev.hash !== h)) {
      this.fail(`${n.id} applied ${e.index}:${e.term} but ${e.index}:${prev.term} was applied elsewhere`);
    }
    if (!prev) {
      this.appliedAt.set(e.index, { term: e.term, hash: h });
      if (e.index > this.maxApplied) this.maxApplied = e.index;
      this.stats.committed++;
    }
    let result: KvResult | undefined;
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      n.raft.applyConfChange(cc);
      this.log(`${n.id} applied conf ${cc.type} ${cc.node} @${e.index} -> ${JSON.stringify(n.raft.confState())}`);
    } else if (e.data.byteLength > 0) {
      result = n.kv.applyEncoded(e.data);
    }
    n.appliedSinceSnapshot++;
    const w = n.writes.get(e.index);
    if (w) {
      n.writes.delete(e.index);
      // Another entry at this index means our proposal was definitely not applied.
      w.settle(w.term === e.term && result ? result : null);
    }
  }

  private serveReads(n: SimNode): void {
    for (const [ctx, r] of n.reads) {
      if (r.index !== null && n.raft.log.applied >= r.index) {
        n.reads.delete(ctx);
        r.settle({ value: n.kv.get(r.key)?.value ?? null });
      }
    }
  }

  private maybeSnapshot(n: SimNode): void {
    const every = this.opts.snapshotEvery;
    if (every <= 0 || n.appliedSinceSnapshot < every) return;
    const applied = n.raft.log.applied;
    if (applied <= n.mem.snapshot().meta.index) return;
    const snap = n.mem.createSnapshot(applied, n.raft.confState(), n.kv.snapshot());
    n.disk.saveSnapshot(snap);
    // keep a few trailing entries so a slightly lagging follower needs no snapshot
    const keep = Math.min(5, applied - n.mem.firstIndex() + 1);
    const upTo = applied - keep;
    if (upTo >= n.mem.firstIndex()) {
      n.mem.compact(upTo);
      n.disk.compact(upTo);
    }
    n.appliedSinceSnapshot = 0;
    this.log(`${n.id} snapshot @${applied}`);
  }

  // --------------------------------------------------------------- network

  private send(m: Message): void {
    if (m.type === 'snap') this.stats.snapshotsSent++;
    if (this.cuts.has(`${m.from}->${m.to}`)) return;
    if (this.lossRate > 0 && this.rng.chance(this.lossRate)) return;
    const copies = this.dupRate > 0 && this.rng.chance(this.dupRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = 0.2 + this.rng.next() * 3; // jitter reorders messages
      this.at(delay, () => {
        const to = this.nodes.get(m.to);
        if (!to || !to.alive) return;
        if (this.cuts.has(`${m.from}->${m.to}`)) return;
        to.raft.step(m);
        this.pump(to);
      });
    }
  }

  // ------------------------------------------------------------- invariants

  private checkNodeInvariants(n: SimNode): void {
    const r = n.raft;
    if (r.term < n.lastTerm) this.fail(`${n.id} term went back from ${n.lastTerm} to ${r.term}`);
    n.lastTerm = r.term;
    if (r.log.committed < n.lastCommit) this.fail(`${n.id} commit went back ${n.lastCommit} -> ${r.log.committed}`);
    n.lastCommit = r.log.committed;
    if (r.log.applied < n.lastApplied) this.fail(`${n.id} applied went back ${n.lastApplied} -> ${r.log.applied}`);
    n.lastApplied = r.log.applied;
    if (r.role === 'leader') {
      // Election safety: at most one leader per term.
      const other = this.leaderOfTerm.get(r.term);
      if (other !== undefined && other !== n.id) this.fail(`two leaders in term ${r.term}: ${other} and ${n.id}`);
      if (other === undefined) {
        this.leaderOfTerm.set(r.term, n.id);
        this.stats.leaderChanges++;
        this.log(`LEADER ${n.id} term ${r.term}`);
      }
      if (n.lastRole !== 'leader') this.checkLeaderCompleteness(n);
    }
    n.lastRole = r.role;
  }

  /** Leader completeness (§5.4): a new leader holds every entry applied anywhere. */
  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.raft.log;
    const first = log.firstIndex();
    for (const [i, a] of this.appliedAt) {
      if (i < first) continue; // inside its snapshot
      let t: number | undefined;
      try {
        t = log.termOrThrow(i);
      } catch {
        continue;
      }
      if (t !== a.term) {
        this.fail(`leader ${n.id} (term ${n.raft.term}) lacks committed entry ${i}:${a.term} (has term ${t})`);
      }
    }
  }

  /**
   * Log matching (§5.3), checked incrementally: every (index, term) pair ever
   * persisted has one data hash and one predecessor term. By induction on the
   * index, two logs that agree at (i, t) agree on every entry before it.
   */
  private recordEntries(n: SimNode, ents: Entry[]): void {
    for (const e of ents) {
      // the persisted log (just appended), not the core's view, which may have moved on
      let prevTerm: number;
      try {
        prevTerm = n.mem.term(e.index - 1);
      } catch {
        prevTerm = -2; // compacted: nothing to compare
      }
      const key = `${e.index}:${e.term}`;
      const h = fnv(e.data);
      const seen = this.entryAt.get(key);
      if (!seen) {
        this.entryAt.set(key, { hash: h, prevTerm });
        continue;
      }
      if (seen.hash !== h) this.fail(`log matching: ${key} has two different payloads (${n.id})`);
      if (seen.prevTerm >= 0 && prevTerm >= 0 && seen.prevTerm !== prevTerm) {
        this.fail(`log matching: ${key} follows term ${prevTerm} on ${n.id} but ${seen.prevTerm} elsewhere`);
      }
    }
  }

  // ---------------------------------------------------------------- nemesis

  private nemesis(): void {
    if (!this.faultsOn) return;
    const f = this.opts.faults;
    const ids = [...this.nodes.keys()];
    const started = ids.filter((id) => this.nodes.get(id)!.incarnation > 0);
    const roll = this.rng.next();
    let acc = 0;
    const pickFault = (p: number) => {
      acc += p;
      return roll < acc;
    };
    if (pickFault(f.crash)) {
      const n = this.nodes.get(this.rng.pick(started))!;
      if (n.alive) {
        this.crash(n);
        const downFor = 20 + this.rng.next() * 400;
        this.at(downFor, () => {
          if (!n.alive) {
            this.log(`RESTART ${n.id}`);
            this.start(n);
          }
        });
      }
    } else if (pickFault(f.partition)) {
      const shuffled = this.rng.shuffle([...ids]);
      const cutAt = this.rng.int(1, ids.length - 1);
      const a = shuffled.slice(0, cutAt);
      const b = shuffled.slice(cutAt);
      for (const x of a) for (const y of b) this.cutBoth(x, y);
      this.log(`PARTITION ${a.join(',')} | ${b.join(',')}`);
    } else if (pickFault(f.oneWay)) {
      const x = this.rng.pick(ids);
      const y = this.rng.pick(ids.filter((i) => i !== x));
      this.cuts.add(`${x}->${y}`);
      this.log(`ONE-WAY ${x} -/-> ${y}`);
    } else if (pickFault(f.heal)) {
      this.heal();
    } else if (pickFault(f.loss)) {
      this.lossRate = this.rng.next() * 0.3;
      this.log(`LOSS ${this.lossRate.toFixed(2)}`);
    } else if (pickFault(f.duplicate)) {
      this.dupRate = this.rng.next() * 0.2;
      this.log(`DUP ${this.dupRate.toFixed(2)}`);
    } else if (pickFault(f.membership)) {
      this.membershipChange();
    } else if (pickFault(f.transfer)) {
      const l = this.currentLeader();
      if (l) {
        const voters = l.raft.confState().voters.filter((v) => v !== l.id);
        if (voters.length > 0) {
          const to = this.rng.pick(voters);
          try {
            l.raft.transferLeadership(to);
            this.log(`TRANSFER ${l.id} -> ${to}`);
            this.pump(l);
          } catch {
            // not possible right now
          }
        }
      }
    }
    this.at(30 + this.rng.next() * 150, () => this.nemesis());
  }

  private cutBoth(a: NodeId, b: NodeId): void {
    this.cuts.add(`${a}->${b}`);
    this.cuts.add(`${b}->${a}`);
  }

  private heal(): void {
    this.cuts.clear();
    this.lossRate = 0;
    this.dupRate = 0;
    this.log('HEAL');
  }

  private currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.alive && n.raft.role === 'leader' && (!best || n.raft.term > best.raft.term)) best = n;
    }
    return best;
  }

  private membershipChange(): void {
    const l = this.currentLeader();
    if (!l) return;
    const conf = l.raft.confState();
    try {
      if (this.pendingPromotion && conf.learners.includes(this.pendingPromotion)) {
        const pr = l.raft.status().progress.find((p) => p.id === this.pendingPromotion);
        if (pr && pr.match >= l.raft.log.lastIndex() - 3) {
          l.raft.proposeConfChange({ type: 'addVoter', node: this.pendingPromotion });
          this.log(`CONF promote ${this.pendingPromotion}`);
          this.pendingPromotion = null;
          this.stats.confChanges++;
        }
      } else {
        const members = new Set([...conf.voters, ...conf.learners]);
        const outsiders = [...this.nodes.keys()].filter((id) => !members.has(id));
        if (outsiders.length > 0 && (conf.voters.length <= 3 || this.rng.chance(0.5))) {
          const id = this.rng.pick(outsiders);
          const n = this.nodes.get(id)!;
          if (!n.alive) this.start(n);
          l.raft.proposeConfChange({ type: 'addLearner', node: id });
          this.pendingPromotion = id;
          this.log(`CONF addLearner ${id}`);
          this.stats.confChanges++;
        } else if (conf.voters.length > 3) {
          const victim = this.rng.pick(conf.voters.filter((v) => v !== l.id));
          l.raft.proposeConfChange({ type: 'removeNode', node: victim });
          this.log(`CONF remove ${victim}`);
          this.stats.confChanges++;
        }
      }
      this.pump(l);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError) && !(e instanceof NotLeaderError)) throw e;
    }
  }

  // ---------------------------------------------------------------- clients

  private pickTarget(): SimNode | undefined {
    const l = this.currentLeader();
    if (l && this.rng.chance(0.8)) return l;
    const alive = [...this.nodes.values()].filter((n) => n.alive);
    return alive.length > 0 ? this.rng.pick(alive) : undefined;
  }

  private clientsActive(): boolean {
    return this.now <= this.opts.faultMs + this.opts.quiesceMs * 0.6;
  }

  /**
   * Propose a command through some node, retrying while no node accepts it.
   * Outcome: 'applied' with the result, 'notApplied' (never proposed, or its
   * index was taken by another entry) or 'unknown' (crash or timeout after
   * it was proposed).
   */
  private submit(
    cmd: KvCommand,
    onProposed: () => void,
    done: (r: { kind: 'applied'; result: KvResult } | { kind: 'notApplied' } | { kind: 'unknown' }) => void,
    deadline = this.now + 400,
  ): void {
    if (this.now > deadline) return done({ kind: 'notApplied' });
    const n = this.pickTarget();
    const retry = () => this.at(5 + this.rng.next() * 10, () => this.submit(cmd, onProposed, done, deadline));
    if (!n) return retry();
    let r: { index: number; term: number };
    try {
      r = n.raft.propose(encodeKvCommand(cmd));
    } catch (e) {
      if (e instanceof NotLeaderError || e instanceof ProposalDroppedError) return retry();
      throw e;
    }
    onProposed();
    let settled = false;
    const finish = (x: Parameters<typeof done>[0]) => {
      if (settled) return;
      settled = true;
      done(x);
    };
    n.writes.set(r.index, {
      index: r.index,
      term: r.term,
      settle: (result) => finish(result === undefined ? { kind: 'unknown' } : result === null ? { kind: 'notApplied' } : { kind: 'applied', result }),
    });
    this.at(600, () => {
      if (!settled) {
        n.writes.delete(r.index);
        finish({ kind: 'unknown' });
      }
    });
    this.pump(n);
  }

  /** A linearizable read by ReadIndex on some node (forwarded to the leader by followers). */
  private readKey(key: string, done: (r: { value: string | null } | null) => void, deadline = this.now + 400): void {
    if (this.now > deadline) return done(null);
    const n = this.pickTarget();
    const retry = () => this.at(5 + this.rng.next() * 10, () => this.readKey(key, done, deadline));
    if (!n) return retry();
    const ctx = `r${++this.readCounter}`;
    let settled = false;
    const finish = (v: { value: string | null } | null) => {
      if (settled) return;
      settled = true;
      done(v);
    };
    n.reads.set(ctx, { key, index: null, settle: finish });
    try {
      n.raft.readIndex(ctx);
    } catch (e) {
      n.reads.delete(ctx);
      settled = true;
      if (e instanceof NotLeaderError) return retry();
      throw e;
    }
    this.at(300, () => {
      if (!settled) {
        n.reads.delete(ctx);
        finish(null);
      }
    });
    this.pump(n);
  }

  private runKvClient(client: number): void {
    if (!this.clientsActive()) return;
    const key = `k${this.rng.int(1, this.opts.keys)}`;
    const roll = this.rng.next();
    let cmd: KvCommand;
    if (roll < 0.4) cmd = { op: 'get', key };
    else if (roll < 0.7) cmd = { op: 'put', key, value: `v${++this.valueCounter}` };
    else if (roll < 0.85) {
      const expected = this.rng.chance(0.3) ? null : `v${this.rng.int(Math.max(1, this.valueCounter - 3), this.valueCounter + 1)}`;
      cmd = { op: 'cas', key, expected, value: `v${++this.valueCounter}` };
    } else if (roll < 0.92) cmd = { op: 'delete', key };
    else {
      const k2 = `k${this.rng.int(1, this.opts.keys)}`;
      cmd = {
        op: 'txn',
        compare: [{ key, value: this.rng.chance(0.5) ? null : `v${this.rng.int(1, this.valueCounter + 1)}` }],
        success: [
          { op: 'put', key, value: `v${++this.valueCounter}` },
          { op: 'put', key: k2, value: `v${++this.valueCounter}` },
        ],
        failure: [{ op: 'put', key: k2, value: `v${++this.valueCounter}` }],
      };
    }
    const op: HistoryOp = { client, input: cmd, call: this.now, ret: Infinity };
    const next = () => this.at(1 + this.rng.next() * 20, () => this.runKvClient(client));
    if (cmd.op === 'get' && this.rng.chance(0.85)) {
      this.readKey(cmd.key, (r) => {
        if (r) {
          op.output = { op: 'get', value: r.value, revision: 0 };
          op.ret = this.now;
          this.history.push(op);
          this.stats.reads++;
        }
        next();
      });
      return;
    }
    this.submit(
      cmd,
      () => this.history.push(op),
      (r) => {
        if (r.kind === 'applied') {
          op.output = r.result;
          op.ret = this.now;
          this.stats.acknowledgedWrites++;
        } else if (r.kind === 'notApplied') {
          const i = this.history.indexOf(op);
          if (i >= 0) this.history.splice(i, 1); // it did not happen
        } else {
          this.stats.unknownWrites++; // stays with ret = Infinity
        }
        next();
      },
    );
  }

  // The bank check (the ATM exercise): transfers by optimistic compare-and-set
  // of both balances; reads of all balances atomically through the log.
  private runBankClient(client: number): void {
    if (!this.clientsActive()) return;
    const accounts = this.bankAccounts();
    const next = () => this.at(1 + this.rng.next() * 20, () => this.runBankClient(client));
    if (this.rng.chance(0.35)) {
      const op: BankHistoryOp = { client, input: { type: 'read' }, call: this.now, ret: Infinity };
      this.submit(
        { op: 'txn', compare: [], success: [], read: accounts },
        () => {},
        (r) => {
          if (r.kind === 'applied' && r.result.op === 'txn' && r.result.values) {
            const balances: Record<string, number> = {};
            for (const a of accounts) balances[a] = Number(r.result.values[a]);
            op.output = { type: 'read', balances };
            op.ret = this.now;
            this.bankHistory.push(op);
          }
          next();
        },
      );
      return;
    }
    const from = this.rng.pick(accounts);
    const to = this.rng.pick(accounts.filter((a) => a !== from));
    const amount = this.rng.int(1, 60);
    const op: BankHistoryOp = { client, input: { type: 'transfer', from, to, amount }, call: this.now, ret: Infinity };
    const attempt = (tries: number) => {
      // read both balances through the log
      this.submit(
        { op: 'txn', compare: [], success: [], read: [from, to] },
        () => {},
        (r) => {
          if (r.kind !== 'applied' || r.result.op !== 'txn' || !r.result.values) return next(); // nothing changed
          const vf = r.result.values[from]!;
          const vt = r.result.values[to]!;
          const bf = Number(vf);
          if (bf < amount) {
            op.output = { type: 'transfer', result: 'insufficient' };
            op.ret = this.now;
            this.bankHistory.push(op);
            return next();
          }
          this.bankHistory.push(op);
          this.submit(
            {
              op: 'txn',
              compare: [
                { key: from, value: vf },
                { key: to, value: vt },
              ],
              success: [
                { op: 'put', key: from, value: String(bf - amount) },
                { op: 'put', key: to, value: String(Number(vt) + amount) },
              ],
            },
            () => {},
            (w) => {
              if (w.kind === 'applied' && w.result.op === 'txn' && w.result.succeeded) {
                op.output = { type: 'transfer', result: 'ok' };
                op.ret = this.now;
                this.stats.acknowledgedWrites++;
                return next();
              }
              // conflict (or never proposed): it definitely did not happen; try again
              if (w.kind === 'notApplied' || (w.kind === 'applied' && w.result.op === 'txn' && !w.result.succeeded)) {
                this.bankHistory.splice(this.bankHistory.indexOf(op), 1);
                if (tries < 5 && this.clientsActive()) return attempt(tries + 1);
                return next();
              }
              this.stats.unknownWrites++;
              next(); // unknown: stays in the history with ret = Infinity
            },
          );
        },
      );
    };
    attempt(0);
  }

  private bankAccounts(): string[] {
    return Array.from({ length: Math.max(3, this.opts.keys) }, (_, i) => `acct${i + 1}`);
  }

  /** Opening balances, written once through the log before transfers start. */
  private openBankAccounts(then: () => void): void {
    const writes = this.bankAccounts().map((a) => ({ op: 'put' as const, key: a, value: String(BANK_OPENING_BALANCE) }));
    this.submit(
      { op: 'txn', compare: [{ key: 'opened', value: null }], success: [...writes, { op: 'put', key: 'opened', value: 'yes' }] },
      () => {},
      (r) => {
        if (r.kind === 'applied') then();
        else this.at(20, () => this.openBankAccounts(then));
      },
      this.now + 10_000,
    );
  }

  bankInitialBalances(): Record<string, number> {
    return Object.fromEntries(this.bankAccounts().map((a) => [a, BANK_OPENING_BALANCE]));
  }

  // -------------------------------------------------------------------- run

  run(maxEvents = 2_000_000): SimResult {
    this.at(50, () => this.nemesis());
    if (this.opts.workload === 'bank') {
      this.at(10, () =>
        this.openBankAccounts(() => {
          for (let c = 0; c < this.opts.clients; c++) this.at(1 + c, () => this.runBankClient(c));
        }),
      );
    } else {
      for (let c = 0; c < this.opts.clients; c++) this.at(10 + c, () => this.runKvClient(c));
    }
    const healAt = this.opts.faultMs;
    this.at(healAt, () => {
      this.faultsOn = false;
      this.heal();
      for (const n of this.nodes.values()) {
        if (!n.alive && n.incarnation > 0) {
          this.log(`RESTART ${n.id} (heal)`);
          this.start(n);
        }
      }
    });
    const end = this.opts.faultMs + this.opts.quiesceMs;
    let events = 0;
    for (;;) {
      const t = this.q.peekTime();
      if (t === undefined || t > end) break;
      const ev = this.q.pop()!;
      this.now = ev.at;
      ev.run();
      if (++events > maxEvents) this.fail(`more than ${maxEvents} events`);
    }
    this.stats.events = events;
    this.stats.virtualMs = this.now;
    this.checkFinal();
    return {
      seed: this.opts.seed,
      history: this.history,
      bankHistory: this.bankHistory,
      bankInitialBalances: this.bankInitialBalances(),
      stats: this.stats,
    };
  }

  /** After healing: liveness (a leader, everyone caught up) and convergence. */
  private checkFinal(): void {
    const leader = this.currentLeader();
    if (!leader) this.fail(`liveness: no leader ${this.opts.quiesceMs}ms after every fault healed`);
    const conf = leader.raft.confState();
    const members = [...conf.voters, ...conf.learners];
    const target = leader.raft.log.committed;
    for (const id of members) {
      const n = this.nodes.get(id)!;
      if (!n.alive) this.fail(`${id} is a member but not running after heal`);
      if (n.raft.log.applied < target) {
        this.fail(`liveness: ${id} applied ${n.raft.log.applied} < leader commit ${target} after quiesce`);
      }
    }
    // Convergence: every member that applied the same index holds the same state.
    const ref = new TextDecoder().decode(leader.kv.snapshot());
    for (const id of members) {
      const n = this.nodes.get(id)!;
      if (n.raft.log.applied === leader.raft.log.applied) {
        const s = new TextDecoder().decode(n.kv.snapshot());
        if (s !== ref) this.fail(`${id} state differs from leader ${leader.id} at applied ${n.raft.log.applied}`);
      }
    }
    if (this.opts.workload === 'bank') {
      const balances: Record<string, number> = {};
      for (const a of this.bankAccounts()) balances[a] = Number(leader.kv.get(a)?.value ?? 'NaN');
      this.bankHistory.push({ client: -1, input: { type: 'read' }, output: { type: 'read', balances }, call: this.now + 1, ret: this.now + 2 });
      return;
    }
    // Nothing acknowledged is lost: the final state is read back as part of the
    // history (one linearizable read per key), so the checker sees it.
    for (let k = 1; k <= this.opts.keys; k++) {
      const key = `k${k}`;
      const v = leader.kv.get(key)?.value ?? null;
      this.history.push({
        client: -1,
        input: { op: 'get', key },
        output: { op: 'get', value: v, revision: leader.kv.currentRevision },
        call: this.now + 1,
        ret: this.now + 2,
      });
    }
  }

  confState(): ConfState | undefined {
    return this.currentLeader()?.raft.confState();
  }
}

export function runSimulation(opts: SimOptions): SimResult {
  return new SimCluster(opts).run();
}
