// An in-memory network of Raft cores for paper tests: messages are delivered
// synchronously until the system is quiet, through filters that drop, cut,
// isolate and recover. Each node's "disk" is a MemoryLog that the harness
// updates exactly as a real host would (persist, then send, then apply).
import { decodeConfChange } from '../../../src/raft/core/conf-change.js';
import { Raft } from '../../../src/raft/core/raft.js';
import { EntryType, type Entry, type Message, type NodeId, type RaftConfig, type ReadState } from '../../../src/raft/core/types.js';
import { MemoryLog, emptySnapshot } from '../../../src/raft/storage/memory-log.js';
import { Rng } from '../sim/rng.js';

export interface MemNode {
  id: NodeId;
  raft: Raft;
  storage: MemoryLog;
  /** Application data restored from the last snapshot installed on this node. */
  fromSnapshot: string[];
  applied: Entry[];
  /** Read states delivered to this node's host, in order. */
  readStates: ReadState[];
}

function decodeSnapshotData(data: Uint8Array): string[] {
  if (data.byteLength === 0) return [];
  return JSON.parse(new TextDecoder().decode(data)) as string[];
}

export interface MemNetworkOptions {
  electionTick?: number;
  heartbeatTick?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  seed?: number;
  maxInflight?: number;
  maxSizePerMsg?: number;
}

export class MemNetwork {
  readonly nodes = new Map<NodeId, MemNode>();
  /** Directed links that drop everything: "from->to". */
  private cuts = new Set<string>();
  private dropRate = 0;
  /** Drop any message for which this returns true (scenario surgery). */
  dropIf: ((m: Message) => boolean) | null = null;
  private readonly rng: Rng;
  /** Messages sent (after filters), for assertions. */
  readonly sent: Message[] = [];
  private readonly opts: Required<Omit<MemNetworkOptions, 'seed'>>;

  constructor(ids: NodeId[], opts: MemNetworkOptions = {}) {
    this.rng = new Rng(opts.seed ?? 1);
    this.opts = {
      electionTick: opts.electionTick ?? 10,
      heartbeatTick: opts.heartbeatTick ?? 1,
      preVote: opts.preVote ?? false,
      checkQuorum: opts.checkQuorum ?? false,
      maxInflight: opts.maxInflight ?? 256,
      maxSizePerMsg: opts.maxSizePerMsg ?? 1 << 20,
    };
    for (const id of ids) this.addNode(id, { voters: ids, learners: [] });
  }

  addNode(id: NodeId, conf: { voters: NodeId[]; learners: NodeId[] }, storage?: MemoryLog): MemNode {
    const st = storage ?? new MemoryLog(emptySnapshot(conf));
    const cfg: RaftConfig = {
      id,
      electionTick: this.opts.electionTick,
      heartbeatTick: this.opts.heartbeatTick,
      storage: st,
      random: () => this.rng.next(),
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      maxInflight: this.opts.maxInflight,
      maxSizePerMsg: this.opts.maxSizePerMsg,
    };
    const node: MemNode = { id, raft: new Raft(cfg), storage: st, fromSnapshot: [], applied: [], readStates: [] };
    this.nodes.set(id, node);
    return node;
  }

  /** Restart a node from its storage (what a crash after fsync leaves). */
  restart(id: NodeId): MemNode {
    const old = this.node(id);
    const st = old.storage;
    const node = this.addNode(id, st.initialState().conf, st);
    node.fromSnapshot = decodeSnapshotData(st.snapshot().data);
    return node;
  }

  node(id: NodeId): MemNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  cut(a: NodeId, b: NodeId): void {
    this.cuts.add(`${a}->${b}`);
    this.cuts.add(`${b}->${a}`);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}->${to}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  recover(): void {
    this.cuts.clear();
    this.dropRate = 0;
    this.dropIf = null;
  }

  drop(rate: number): void {
    this.dropRate = rate;
  }

  /** Run one Ready cycle for a node; returns the messages it emitted. */
  processReady(n: MemNode): Message[] {
    if (!n.raft.hasReady()) return [];
    const rd = n.raft.ready();
    if (rd.snapshot) {
      n.storage.applySnapshot(rd.snapshot);
      n.fromSnapshot = decodeSnapshotData(rd.snapshot.data);
      n.applied = [];
    }
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) n.raft.applyConfChange(decodeConfChange(e.data));
      n.applied.push(e);
    }
    n.readStates.push(...rd.readStates);
    n.raft.advance(rd);
    return rd.messages;
  }

  /** Deliver messages (and the readies they cause) until nothing moves. */
  stabilize(initial: Message[] = [], maxRounds = 10_000): void {
    let queue = [...initial];
    for (let round = 0; round < maxRounds; round++) {
      for (const n of this.nodes.values()) queue.push(...this.processReady(n));
      if (queue.length === 0) return;
      const batch = queue;
      queue = [];
      for (const m of batch) {
        if (this.cuts.has(`${m.from}->${m.to}`)) continue;
        if (this.dropRate > 0 && this.rng.next() < this.dropRate) continue;
        if (this.dropIf && this.dropIf(m)) continue;
        const to = this.nodes.get(m.to);
        if (!to) continue;
        this.sent.push(m);
        to.raft.step(m);
      }
    }
    throw new Error('mem network: did not stabilize');
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.raft(id).tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.raft.tick();
      this.stabilize();
    }
  }

  /** Make `id` campaign and deliver everything. */
  elect(id: NodeId): void {
    this.raft(id).campaign();
    this.stabilize();
  }

  /** Campaign until `id` wins (a lost election leaves it a follower of a higher term). */
  electUntil(id: NodeId, attempts = 10): void {
    for (let i = 0; i < attempts; i++) {
      if (this.raft(id).role === 'leader') return;
      this.raft(id).campaign();
      this.stabilize();
    }
    throw new Error(`${id} did not win an election in ${attempts} attempts`);
  }

  leader(): NodeId | null {
    let found: NodeId | null = null;
    for (const n of this.nodes.values()) {
      if (n.raft.role === 'leader') {
        if (found === null || n.raft.term > this.raft(found).term) found = n.id;
      }
    }
    return found;
  }

  propose(id: NodeId, data: string): { index: number; term: number } {
    const r = this.raft(id).propose(new TextEncoder().encode(data));
    this.stabilize();
    return r;
  }

  appliedData(id: NodeId): string[] {
    const dec = new TextDecoder();
    const n = this.node(id);
    return [
      ...n.fromSnapshot,
      ...n.applied.filter((e) => e.type === EntryType.Normal && e.data.byteLength > 0).map((e) => dec.decode(e.data)),
    ];
  }

  /** Snapshot the node's applied state and compact its log up to the applied index, keeping `keep` entries. */
  snapshotAndCompact(id: NodeId, keep = 0): number {
    const n = this.node(id);
    const applied = n.raft.log.applied;
    const data = new TextEncoder().encode(JSON.stringify(this.appliedData(id)));
    n.storage.createSnapshot(applied, n.raft.confState(), data);
    n.storage.compact(Math.max(applied - keep, n.storage.firstIndex() - 1));
    return applied;
  }
}
