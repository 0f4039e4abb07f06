// One partition replica on a broker: its Raft group (id `t/<topic>/<partition>`,
// data under <dataDir>/partitions/<topic>/<partition>), its state machine,
// the long-poll waiters of fetches, and — while this replica leads — the
// reconciliation of the group's membership with the managers' desired
// replica set, one single-server change at a time:
//   a desired broker that is not a member  -> addLearner
//   a learner whose log has caught up       -> addVoter
//   a voter that is no longer desired       -> removeNode (self: hand leadership over first)
//   every desired broker a voter, and the preferred leader (replicas[0])
//   caught up and not leading               -> transferLeadership to it (balanced leaders)
import type { RaftHost } from '../../raft/host/raft-host.js';
import type { RaftGroup, RaftTiming } from '../../raft/host/raft-group.js';
import type { Logger } from '../common/logger.js';
import { encodeMultiAppend, PartitionStateMachine, type AppendResult, type PartitionResult } from './partition-state-machine.js';
import { partitionGroupId, type PartitionRecord, type PartitionReport } from './placement-records.js';

/** A learner within this many entries of the commit index is promoted. */
const CAUGHT_UP_ENTRIES = 20;
/** After gaining leadership or asking for a transfer, wait this long before asking (again). */
const TRANSFER_COOLDOWN_MS = 5_000;

interface QueuedAppend {
  command: Uint8Array;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

/** Most appends coalesced into one Raft entry. */
const MAX_COALESCED = 256;
const MAX_COALESCED_BYTES = 4 * 1024 * 1024;

interface Waiter {
  from: number;
  resolve: () => void;
  timer: NodeJS.Timeout;
}

export class PartitionReplica {
  readonly sm = new PartitionStateMachine();
  readonly group: RaftGroup<PartitionResult>;
  readonly groupId: string;
  private waiters = new Set<Waiter>();
  private queued: QueuedAppend[] = [];
  private flushScheduled = false;
  private changing = false;
  private leaderSince = 0;
  private lastTransferAt = 0;
  /** Set when this broker was removed from the group by its leader. */
  removed = false;

  constructor(
    readonly topic: string,
    readonly partition: number,
    host: RaftHost,
    opts: {
      dir: string;
      bootstrap?: { voters: string[]; addresses: Record<string, string> };
      timing?: Partial<RaftTiming>;
      snapshotEntries?: number;
      keepEntries?: number;
      log: Logger;
      onRemoved: () => void;
    },
  ) {
    this.groupId = partitionGroupId(topic, partition);
    this.sm.onAppend = () => this.wake();
    const self = host.nodeId;
    this.group = host.addGroup<PartitionResult>({
      group: this.groupId,
      dir: opts.dir,
      stateMachine: this.sm,
      ...(opts.bootstrap ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.timing ? { timing: opts.timing } : {}),
      ...(opts.snapshotEntries ? { snapshotEntries: opts.snapshotEntries } : {}),
      ...(opts.keepEntries ? { keepEntries: opts.keepEntries } : {}),
      onLeaderChange: (leader) => {
        if (leader === self) this.leaderSince = Date.now();
        // A follower's fetchers must go to the new leader.
        if (leader !== self) this.wakeAll();
      },
      onConfChange: (_conf, cc) => {
        if (cc.type === 'removeNode' && cc.node === self) {
          this.removed = true;
          opts.log.info({ partition: this.groupId }, 'this replica was removed from the partition group');
          setImmediate(opts.onRemoved);
        }
      },
    });
  }

  /**
   * Propose an append command. Appends that arrive in the same turn of the
   * event loop share one Raft entry (one log record, one apply), each still
   * answered with its own offsets; under concurrency this saves most of the
   * per-entry work on every replica.
   */
  append(command: Uint8Array): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queued.push({ command, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushAppends());
      }
    });
  }

  private flushAppends(): void {
    this.flushScheduled = false;
    while (this.queued.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < this.queued.length && n < MAX_COALESCED && (n === 0 || bytes + this.queued[n]!.command.byteLength <= MAX_COALESCED_BYTES)) {
        bytes += this.queued[n]!.command.byteLength;
        n++;
      }
      const batch = this.queued.splice(0, n);
      const fail = (e: unknown) => {
        for (const q of batch) q.reject(e as Error);
      };
      try {
        if (batch.length === 1) {
          this.group.propose(batch[0]!.command).then((r) => batch[0]!.resolve(r as AppendResult), fail);
        } else {
          this.group.propose(encodeMultiAppend(batch.map((q) => q.command))).then((r) => {
            const results = r as AppendResult[];
            batch.forEach((q, i) => q.resolve(results[i]!));
          }, fail);
        }
      } catch (e) {
        fail(e);
      }
    }
  }

  get highWatermark(): number {
    return this.sm.highWatermark;
  }

  /** Resolves when messages at or beyond `from` exist, or after waitMs. */
  waitFor(from: number, waitMs: number): Promise<void> {
    if (this.sm.highWatermark > from || waitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const w: Waiter = {
        from,
        resolve: () => {
          clearTimeout(w.timer);
          this.waiters.delete(w);
          resolve();
        },
        timer: setTimeout(() => w.resolve(), waitMs),
      };
      this.waiters.add(w);
    });
  }

  private wake(): void {
    if (this.waiters.size === 0) return;
    const hw = this.sm.highWatermark;
    for (const w of [...this.waiters]) if (hw > w.from) w.resolve();
  }

  wakeAll(): void {
    for (const w of [...this.waiters]) w.resolve();
  }

  report(): PartitionReport {
    const s = this.group.status();
    let lag = s.commit - s.applied;
    if (s.role === 'leader') {
      for (const p of s.progress) if (p.id !== s.id) lag = Math.max(lag, s.lastIndex - p.match);
    }
    return {
      topic: this.topic,
      partition: this.partition,
      role: s.role,
      leader: s.leader,
      term: s.term,
      commitIndex: s.commit,
      appliedIndex: s.applied,
      highWatermark: this.sm.highWatermark,
      voters: s.conf.voters,
      learners: s.conf.learners,
      lag,
    };
  }

  /** Leader only: move the group one step towards the desired replica set. */
  async reconcile(desired: PartitionRecord, raftAddress: (id: string) => string | undefined, log: Logger): Promise<void> {
    if (!this.group.isLeader || this.changing) return;
    const s = this.group.status();
    if (s.leadTransferee) return;
    const want = desired.replicas;
    const voters = s.conf.voters;
    const learners = s.conf.learners;
    const progress = new Map(s.progress.map((p) => [p.id, p]));
    const step = async (what: string, run: () => Promise<unknown>): Promise<void> => {
      this.changing = true;
      log.info({ partition: this.groupId, change: what, voters, learners, desired: want }, 'changing partition membership');
      try {
        await run();
      } catch (e) {
        log.warn({ partition: this.groupId, change: what, err: (e as Error).message }, 'membership change failed; will retry');
      } finally {
        this.changing = false;
      }
    };
    const missing = want.find((b) => !voters.includes(b) && !learners.includes(b));
    if (missing !== undefined) {
      const address = raftAddress(missing);
      if (!address) return;
      await step(`addLearner ${missing}`, () => this.group.changeMembership({ type: 'addLearner', node: missing, address }));
      return;
    }
    const ready = learners.find((b) => want.includes(b) && (progress.get(b)?.match ?? 0) >= s.commit - CAUGHT_UP_ENTRIES);
    if (ready !== undefined) {
      const address = raftAddress(ready);
      await step(`addVoter ${ready}`, () => this.group.changeMembership({ type: 'addVoter', node: ready, ...(address ? { address } : {}) }));
      return;
    }
    if (learners.some((b) => want.includes(b))) return; // still catching up
    const extra = [...learners, ...voters].find((b) => !want.includes(b) && b !== s.id);
    if (extra !== undefined) {
      await step(`removeNode ${extra}`, () => this.group.changeMembership({ type: 'removeNode', node: extra }));
      return;
    }
    const now = Date.now();
    if (!want.includes(s.id)) {
      // This broker is to leave: hand leadership to a caught-up desired voter first.
      const to = want.filter((b) => voters.includes(b)).sort((a, b) => (progress.get(b)?.match ?? 0) - (progress.get(a)?.match ?? 0))[0];
      if (to !== undefined && now - this.lastTransferAt > 1_000) {
        this.lastTransferAt = now;
        log.info({ partition: this.groupId, to }, 'leaving the partition: transferring leadership');
        this.group.transferLeadership(to);
      }
      return;
    }
    const preferred = want[0];
    if (preferred === undefined || preferred === s.id || !voters.includes(preferred)) return;
    const pr = progress.get(preferred);
    if (!pr || !pr.recentActive || pr.match < s.commit) return;
    if (now - this.leaderSince < TRANSFER_COOLDOWN_MS || now - this.lastTransferAt < TRANSFER_COOLDOWN_MS) return;
    this.lastTransferAt = now;
    log.info({ partition: this.groupId, to: preferred }, 'moving leadership to the preferred replica (balanced leaders)');
    try {
      this.group.transferLeadership(preferred);
    } catch {
      /* not a voter yet or already transferring */
    }
  }

  stop(host: RaftHost): void {
    for (const w of [...this.waiters]) w.resolve();
    host.removeGroup(this.groupId);
  }
}
