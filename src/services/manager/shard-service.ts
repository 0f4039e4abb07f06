// The managers' side of the voting shards: the shard map and one record per
// shard (who is primary, under which epoch), kept in the replicated KV. Every
// change is one Raft-committed transaction that compares the values it read,
// so a concurrent change (another init, a failover) makes it retry instead of
// overwriting. Runs on the leader; routes forward to it.
//
// Failover runs here too, on the leader only, every 250 ms once the failure
// detector is active (liveness.ts): for each shard, the pure rule
// decideFailover (core/shard-records.ts) reads the committed liveness records
// and the copies' latest heartbeats (state, copy readiness, applied offset,
// lost data), and a promotion or reinstatement is committed as a
// compare-and-set on the record at the epoch it read. In async mode the
// history entry of a promotion carries the shard service's count of votes at
// risk at that moment (from its heartbeat: acknowledged, not yet in the log).
import {
  canonicalJson,
  checkInitShard,
  convergeShardRecord,
  decideFailover,
  promote,
  reinstate,
  rejoin,
  SHARD_KEYS,
  type CopyReport,
  type PromoteOutcome,
  type ShardInitRequest,
  type ShardRecord,
} from '../../core/shard-records.js';
import { buildShardMap, checkShardMap, type ShardMap } from '../../core/shard-map.js';
import { validateTopology, type Topology } from '../../core/topology.js';
import type { KvWrite } from '../../raft/kv/kv-state-machine.js';
import { HttpError, type ManagerNode } from './manager-node.js';

export interface ShardsView {
  topology: Topology | null;
  shardMap: ShardMap | null;
  shards: ShardRecord[];
  /** KV revision the view was read at. */
  revision: number;
}

export interface InitResult extends ShardsView {
  /** Keys this call wrote (empty when everything already matched). */
  changed: string[];
  warnings: string[];
}

const CAS_ATTEMPTS = 5;
const FAILOVER_EVERY_MS = 250;

export class ShardDirectoryService {
  private failoverTimer: NodeJS.Timeout | null = null;
  private failoverBusy = false;
  /** Failovers this member decided while leading (for /metrics and tests). */
  failovers = 0;

  constructor(private readonly node: ManagerNode) {}

  /** Start the failover loop (it acts only while this member leads and the failure detector runs). */
  startFailover(): void {
    if (this.failoverTimer) return;
    this.failoverTimer = setInterval(() => void this.failoverRound(), FAILOVER_EVERY_MS);
    this.failoverTimer.unref();
  }

  stopFailover(): void {
    if (this.failoverTimer) clearInterval(this.failoverTimer);
    this.failoverTimer = null;
  }

  /** What the managers know of each node: committed liveness and the latest heartbeat. */
  private copyReports(): { copies: Map<string, CopyReport>; info: Map<string, Record<string, unknown>> } {
    const now = Date.now();
    const records = new Map(this.node.liveness.records().map((r) => [r.id, r] as const));
    const timeout = this.node.liveness.detector.timeoutMs;
    const copies = new Map<string, CopyReport>();
    const info = new Map<string, Record<string, unknown>>();
    const seen = new Set<string>();
    for (const b of this.node.liveness.detector.view(now)) {
      seen.add(b.id);
      info.set(b.id, b.info);
      const dead = records.get(b.id)?.state === 'dead';
      const i = b.info as Record<string, unknown>;
      copies.set(b.id, {
        alive: !dead && b.silentMs <= timeout,
        ...(typeof i.state === 'string' ? { state: i.state } : {}),
        ...(typeof i.copy === 'string' ? { copy: i.copy } : {}),
        ...(typeof i.epoch === 'number' ? { epoch: i.epoch } : {}),
        ...(typeof i.appliedOffset === 'number' ? { appliedOffset: i.appliedOffset } : {}),
        ...(typeof i.votes === 'number' ? { votes: i.votes } : {}),
        ...(typeof i.dataLostAtEpoch === 'number' ? { dataLostAtEpoch: i.dataLostAtEpoch } : {}),
      });
    }
    for (const [id, r] of records) if (!seen.has(id) && r.state === 'dead') copies.set(id, { alive: false });
    return { copies, info };
  }

  /** One failover pass over every shard (leader only). Exposed for tests. */
  async failoverRound(): Promise<number> {
    if (this.failoverBusy || !this.node.group.isLeader || !this.node.liveness.active) return 0;
    this.failoverBusy = true;
    let done = 0;
    try {
      const { copies, info } = this.copyReports();
      for (const rec of this.view().shards) {
        const d = decideFailover(rec, copies);
        if (d.action === 'none') continue;
        try {
          if (d.action === 'promote') {
            const risk = info.get(rec.service)?.atRisk;
            const atRisk = rec.mode === 'async' && typeof risk === 'number' ? { atRisk: risk } : {};
            const reason = `failover: ${d.reason}${atRisk.atRisk !== undefined ? `; ${atRisk.atRisk} acknowledged vote(s) were not yet in the vote log (at risk)` : ''}`;
            await this.promote(rec.shard, d.to, rec.epoch, reason, atRisk);
          } else {
            await this.commitChange(rec.shard, (cur) => reinstate(cur, rec.epoch, `failover: ${d.reason}`, new Date().toISOString()));
            this.node.log.warn({ shard: rec.shard, primary: rec.primary, epoch: rec.epoch + 1 }, 'shard primary reinstated to rebuild from the vote log');
          }
          this.failovers++;
          done++;
        } catch (e) {
          this.node.log.warn({ shard: rec.shard, err: (e as Error).message }, 'failover attempt failed; will retry');
        }
      }
    } catch (e) {
      this.node.log.warn({ err: (e as Error).message }, 'failover round failed; will retry');
    } finally {
      this.failoverBusy = false;
    }
    return done;
  }

  /** Read (linearizably), change with a pure rule, commit as a compare-and-set. Leader only. */
  private async commitChange(shard: number, change: (cur: ShardRecord | null) => PromoteOutcome): Promise<ShardRecord> {
    await this.node.readBarrier();
    const key = SHARD_KEYS.shard(shard);
    const curText = this.node.state.kv.get(key)?.value ?? null;
    const current = curText === null ? null : (JSON.parse(curText) as ShardRecord);
    const out = change(current);
    if (!out.ok) throw new HttpError(out.status, `shard ${shard}: ${out.problem}`, current ? { current } : {});
    if (out.record === current) return current;
    const r = await this.node.proposeLocal({ op: 'txn', compare: [{ key, value: curText }], success: [{ op: 'put', key, value: JSON.stringify(out.record) }] });
    if (r.op !== 'txn' || !r.succeeded) {
      throw new HttpError(409, `shard ${shard}: the record changed meanwhile; read it again`, { current: this.record(shard) });
    }
    return out.record;
  }

  /** A fenced copy, seeded again, becomes a replica (CAS at the epoch it was fenced under). */
  async rejoin(shard: number, node: string, epoch: number, lost: number | null): Promise<ShardRecord> {
    const rec = await this.commitChange(shard, (cur) => rejoin(cur, node, epoch, lost, new Date().toISOString()));
    this.node.log.info({ shard, node, epoch, lost }, lost ? 'deposed primary rejoined; it held votes the new primary lacked' : 'deposed primary rejoined as a replica');
    return rec;
  }

  /** The current view from this member's applied state (call readBarrier first for a linearizable one). */
  view(): ShardsView {
    const kv = this.node.state.kv;
    const shards = kv
      .range(SHARD_KEYS.shardsPrefix)
      .map(([, e]) => JSON.parse(e.value) as ShardRecord)
      .sort((a, b) => a.shard - b.shard);
    return {
      topology: this.node.state.getJson<Topology>(SHARD_KEYS.topology) ?? null,
      shardMap: this.node.state.getJson<ShardMap>(SHARD_KEYS.shardMap) ?? null,
      shards,
      revision: kv.currentRevision,
    };
  }

  record(shard: number): ShardRecord | null {
    return this.node.state.getJson<ShardRecord>(SHARD_KEYS.shard(shard)) ?? null;
  }

  /**
   * Create or converge the shard map and every shard record for a topology
   * (idempotent). Leader only. The topology is stored too, so that shard
   * services started right after find it.
   */
  async init(body: unknown): Promise<InitResult> {
    const req = parseInitRequest(body);
    const t = req.topology;
    const warnings: string[] = [];
    for (let attempt = 1; ; attempt++) {
      await this.node.readBarrier();
      const kv = this.node.state.kv;
      const compare: { key: string; value: string | null }[] = [];
      const success: KvWrite[] = [];
      const changed: string[] = [];
      const now = new Date().toISOString();

      const put = (key: string, value: string) => {
        const cur = kv.get(key)?.value ?? null;
        compare.push({ key, value: cur });
        if (cur !== value) {
          success.push({ op: 'put', key, value });
          changed.push(key);
        }
      };

      const currentTopology = kv.get(SHARD_KEYS.topology)?.value ?? null;
      const topologyText = JSON.stringify(t);
      if (currentTopology === null || canonicalJson(JSON.parse(currentTopology)) !== canonicalJson(t)) put(SHARD_KEYS.topology, topologyText);

      const wantedMap = t.shards > 0 ? buildShardMap(t.shardMap, t.shards) : null;
      const mapText = kv.get(SHARD_KEYS.shardMap)?.value ?? null;
      if (!wantedMap) {
        // No shards wanted: nothing to map (an existing map stays for the data it describes).
      } else if (mapText !== null) {
        const current = JSON.parse(mapText) as ShardMap;
        if (current.kind !== wantedMap.kind || current.shards !== wantedMap.shards) {
          throw new HttpError(
            409,
            `the cluster's shard map is ${current.kind} over ${current.shards} shard(s); changing it to ${wantedMap.kind} over ${wantedMap.shards} would move voters between shards, which dvote does not do`,
            { current },
          );
        }
      } else {
        put(SHARD_KEYS.shardMap, JSON.stringify(wantedMap));
      }

      for (const want of req.shards) {
        const key = SHARD_KEYS.shard(want.shard);
        const curText = kv.get(key)?.value ?? null;
        const current = curText === null ? null : (JSON.parse(curText) as ShardRecord);
        const next = convergeShardRecord(current, want, t.replication, now);
        if (current && !want.postgres.some((p) => p.name === current.primary)) {
          warnings.push(`shard ${want.shard}: primary ${current.primary} is not among the requested PostgreSQL nodes; it stays primary until a failover`);
        }
        if (next) put(key, JSON.stringify(next));
        else compare.push({ key, value: curText });
      }

      if (success.length === 0) return { ...this.view(), changed: [], warnings };
      const r = await this.node.proposeLocal({ op: 'txn', compare, success });
      if (r.op === 'txn' && r.succeeded) {
        this.node.log.info({ changed }, 'shard records initialised');
        return { ...this.view(), changed, warnings };
      }
      if (attempt >= CAS_ATTEMPTS) throw new HttpError(503, 'shard records kept changing while they were initialised; retry', { reason: 'contention' });
    }
  }

  /**
   * Promote a replica to primary under epoch+1 (compare-and-set on the
   * record at `expectedEpoch`). Leader only. failoverRound calls this when a
   * primary's liveness record goes dead; operators through the route.
   */
  async promote(shard: number, newPrimary: string, expectedEpoch: number, reason: string, extra: { atRisk?: number } = {}): Promise<ShardRecord> {
    const rec = await this.commitChange(shard, (cur) => promote(cur, newPrimary, expectedEpoch, reason, new Date().toISOString(), extra));
    this.node.log.info({ shard, primary: newPrimary, epoch: rec.epoch, reason, ...extra }, 'shard primary promoted');
    return rec;
  }
}

function parseInitRequest(body: unknown): ShardInitRequest {
  if (!body || typeof body !== 'object') throw new HttpError(400, 'body must be {"topology": {...}, "shards": [{shard, service, postgres}]}');
  const b = body as Partial<ShardInitRequest>;
  const v = validateTopology(b.topology);
  if (!v.topology) throw new HttpError(400, `topology: ${v.errors.join('; ')}`);
  const t = v.topology;
  if (!Array.isArray(b.shards)) throw new HttpError(400, 'shards must be a list');
  const problems = b.shards.flatMap((s) => checkInitShard(s));
  const numbers = b.shards.map((s) => s.shard).sort((x, y) => x - y);
  if (numbers.length !== t.shards || numbers.some((n, i) => n !== i + 1)) {
    problems.push(`shards: expected shards 1..${t.shards} (the topology's count), got [${numbers.join(', ')}]`);
  }
  if (t.shards > 0) {
    const m = buildShardMap(t.shardMap, t.shards);
    problems.push(...checkShardMap(m));
  }
  if (problems.length > 0) throw new HttpError(400, problems.join('; '));
  return { topology: t, shards: b.shards };
}
