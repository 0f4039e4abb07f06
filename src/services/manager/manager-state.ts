// The managers' replicated state: an etcd-like key-value store. Cluster
// metadata lives in it under the reserved /dvote/ prefix (members, nodes and
// their liveness, shard and partition placement, epochs), so every metadata
// change is a Raft-committed write and every read can be linearizable.
import { KvStateMachine, type KvResult } from '../../raft/kv/kv-state-machine.js';
import type { StateMachine } from '../../raft/host/state-machine.js';

export const KEYS = {
  member: (id: string) => `/dvote/members/${id}`,
  membersPrefix: '/dvote/members/',
  node: (id: string) => `/dvote/nodes/${id}`,
  nodesPrefix: '/dvote/nodes/',
} as const;

export interface MemberRecord {
  id: string;
  http: string;
  raft: string;
}

export class ManagerState implements StateMachine<KvResult> {
  readonly kv = new KvStateMachine();

  apply(data: Uint8Array): KvResult {
    return this.kv.applyEncoded(data);
  }

  snapshot(): Uint8Array {
    return this.kv.snapshot();
  }

  restore(data: Uint8Array): void {
    this.kv.restore(data);
  }

  getJson<T>(key: string): T | undefined {
    const e = this.kv.get(key);
    if (!e) return undefined;
    return JSON.parse(e.value) as T;
  }
}
