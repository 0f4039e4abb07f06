// The managers' view of the voting shards (GET /v1/shards), for the nodes and
// clients that follow it: the shard services and PostgreSQL nodes (who is
// primary, under which epoch) and the vote client (where a voter's shard
// lives). `refresh` reads linearizably; `watch` polls with stale reads, which
// any manager answers cheaply, and never goes back to an older revision.
import type { ShardMap } from '../core/shard-map.js';
import type { ShardRecord } from '../core/shard-records.js';
import type { Topology } from '../core/topology.js';
import { ManagerClient } from './manager-client.js';

export interface ShardsSnapshot {
  topology: Topology | null;
  shardMap: ShardMap | null;
  shards: ShardRecord[];
  /** The managers' KV revision this view was read at. */
  revision: number;
}

export interface ShardDirectoryOptions {
  /** Manager HTTP addresses, or a client to share. */
  managers: string[] | ManagerClient;
  /** Poll period of `watch` (default 500 ms). */
  pollMs?: number;
  timeoutMs?: number;
}

export class ShardDirectory {
  readonly client: ManagerClient;
  private readonly ownsClient: boolean;
  private snap: ShardsSnapshot | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  private readonly listeners: ((s: ShardsSnapshot) => void)[] = [];
  private readonly pollMs: number;
  lastError: string | null = null;

  constructor(opts: ShardDirectoryOptions) {
    if (Array.isArray(opts.managers)) {
      this.client = new ManagerClient({ endpoints: opts.managers, timeoutMs: opts.timeoutMs ?? 5_000, attemptTimeoutMs: 1_000, connections: 2 });
      this.ownsClient = true;
    } else {
      this.client = opts.managers;
      this.ownsClient = false;
    }
    this.pollMs = opts.pollMs ?? 500;
  }

  current(): ShardsSnapshot | null {
    return this.snap;
  }

  record(shard: number): ShardRecord | null {
    return this.snap?.shards.find((r) => r.shard === shard) ?? null;
  }

  /** Read the view again (linearizable unless `stale`). */
  async refresh(opts: { stale?: boolean } = {}): Promise<ShardsSnapshot> {
    const r = await this.client.request('GET', `/v1/shards${opts.stale ? '?stale=true' : ''}`);
    const b = r.body as unknown as ShardsSnapshot;
    const next: ShardsSnapshot = { topology: b.topology ?? null, shardMap: b.shardMap ?? null, shards: b.shards ?? [], revision: Number(b.revision ?? 0) };
    // A stale read from a lagging manager must not undo what we already saw.
    if (this.snap && next.revision < this.snap.revision) return this.snap;
    const changed = !this.snap || next.revision !== this.snap.revision;
    this.snap = next;
    this.lastError = null;
    if (changed) for (const l of this.listeners) l(next);
    return next;
  }

  /** Call `onChange` with every new view (first at once if one is known), polling until stop(). */
  watch(onChange: (s: ShardsSnapshot) => void): void {
    this.listeners.push(onChange);
    if (this.snap) onChange(this.snap);
    if (this.timer) return;
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
    void this.poll();
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.refresh({ stale: true });
    } catch (e) {
      this.lastError = (e as Error).message;
    } finally {
      this.polling = false;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.listeners.length = 0;
    if (this.ownsClient) await this.client.close();
  }
}
