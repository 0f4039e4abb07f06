// The fault schedule of `dvote bench --chaos`: while the load runs, kill the
// manager leader, the vote log's partition leader and a shard primary, pause
// a node, and (on Docker) cut one off the network; each fault is undone after
// a while, marked on the timeline, and later matched with the first
// successful vote after it.
import { BrokerClient } from '../client/broker-client.js';
import type { ShardRecord } from '../core/shard-records.js';
import { VOTE_TOPIC, partitionOf } from '../core/shard-records.js';
import type { Runtime } from '../runtime/runtime.js';
import { sleep } from '../runtime/wait.js';
import { collectStatus } from '../cli/cluster-status.js';

export type FaultKind = 'kill-manager-leader' | 'kill-partition-leader' | 'kill-shard-primary' | 'pause-node' | 'partition-node';

export interface FaultEvent {
  kind: FaultKind;
  target: string;
  /** ms since the load started. */
  at: number;
  restoredAt?: number;
  /** ms from the fault to the first successful vote after it (null: none before the run ended). */
  recoveryMs?: number | null;
  error?: string;
}

export interface ChaosOptions {
  runtime: Runtime;
  cluster: string;
  managers: string[];
  shards: () => ShardRecord[];
  /** When faults start and how far apart (ms since the load started). */
  firstAtMs: number;
  everyMs: number;
  /** How long a fault lasts before it is undone. */
  downMs: number;
  t0: number;
  signal: AbortSignal;
  log: (msg: string) => void;
  /** Only these faults, in this order (default: every kind the runtime supports, cycling). */
  kinds?: FaultKind[];
  /** Stop after this many faults (default: until the load ends). */
  maxFaults?: number;
}

export const FAULT_KINDS: FaultKind[] = ['kill-manager-leader', 'kill-partition-leader', 'kill-shard-primary', 'pause-node', 'partition-node'];

export function faultKinds(runtime: Runtime): FaultKind[] {
  const kinds: FaultKind[] = ['kill-manager-leader', 'kill-partition-leader', 'kill-shard-primary', 'pause-node'];
  if (runtime.kind === 'docker') kinds.push('partition-node');
  return kinds;
}

/** Run faults one after the other until the signal aborts; returns what happened. */
export async function runChaos(o: ChaosOptions): Promise<FaultEvent[]> {
  const events: FaultEvent[] = [];
  const kinds = o.kinds && o.kinds.length > 0 ? o.kinds : faultKinds(o.runtime);
  const brokers = new BrokerClient({ managers: o.managers, timeoutMs: 5_000 });
  try {
    await sleep(o.firstAtMs, o.signal);
    for (let i = 0; !o.signal.aborted && i < (o.maxFaults ?? Infinity); i++) {
      const kind = kinds[i % kinds.length]!;
      const ev: FaultEvent = { kind, target: '?', at: Math.round(performance.now() - o.t0) };
      events.push(ev);
      try {
        const target = await pickTarget(o, kind, brokers, i);
        ev.target = target;
        o.log(`fault: ${kind} ${target}`);
        if (kind === 'pause-node') await o.runtime.pause(o.cluster, target);
        else if (kind === 'partition-node') await o.runtime.disconnect(o.cluster, target);
        else await o.runtime.kill(o.cluster, target, { signal: 'KILL' });
        // The fault is in effect once the runtime has done it (a docker kill takes a while under load).
        ev.at = Math.round(performance.now() - o.t0);
        await sleep(o.downMs);
        await o.runtime.revive(o.cluster, target);
        ev.restoredAt = Math.round(performance.now() - o.t0);
        o.log(`restored: ${target}`);
      } catch (e) {
        ev.error = (e as Error).message;
        o.log(`fault ${kind} failed: ${ev.error}`);
      }
      await sleep(Math.max(0, o.everyMs - o.downMs), o.signal);
    }
  } finally {
    await brokers.close();
  }
  return events;
}

async function pickTarget(o: ChaosOptions, kind: FaultKind, brokers: BrokerClient, i: number): Promise<string> {
  switch (kind) {
    case 'kill-manager-leader': {
      const s = await collectStatus(o.runtime, o.cluster);
      if (!s.managerLeader) throw new Error('no manager leader to kill');
      return s.managerLeader;
    }
    case 'kill-partition-leader': {
      const shards = o.shards();
      const rec = shards[i % Math.max(1, shards.length)];
      if (!rec) throw new Error('no shard');
      const t = await brokers.topic(VOTE_TOPIC);
      const p = t.partitions.find((x) => x.partition === partitionOf(rec.shard));
      if (!p?.leader) throw new Error(`partition ${partitionOf(rec.shard)} has no leader`);
      return p.leader;
    }
    case 'kill-shard-primary': {
      const shards = o.shards();
      const rec = shards[i % Math.max(1, shards.length)];
      if (!rec) throw new Error('no shard');
      return rec.primary;
    }
    case 'pause-node':
    case 'partition-node': {
      const nodes = (await o.runtime.listNodes(o.cluster)).filter((n) => n.state === 'running' && (n.role === 'broker' || n.role === 'postgres'));
      const replicas = new Set(o.shards().flatMap((r) => r.replicas));
      // prefer a replica or a follower broker: the cluster must keep going
      const pool = nodes.filter((n) => replicas.has(n.name) || n.role === 'broker');
      const pick = pool[i % Math.max(1, pool.length)];
      if (!pick) throw new Error('no node to pause');
      return pick.name;
    }
  }
}
