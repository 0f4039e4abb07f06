// The managers' side of the voting shards: the shard map and one record per
// shard (who is primary, under which epoch), kept in the replicated KV. Every
// change is one Raft-committed transaction that compares the values it read,
// so a concurrent change (another init, a failover) makes it retry instead of
// overwriting. Runs on the leader; routes forward to it.
import {
  canonicalJson,
  checkInitShard,
  convergeShardRecord,
  promote,
  SHARD_KEYS,
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

export class ShardDirectoryService {
  constructor(private readonly node: ManagerNode) {}

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
   * record at `expectedEpoch`). Leader only. The failover logic (part B of
   * issue 5) calls this when a primary's liveness record goes dead.
   */
  async promote(shard: number, newPrimary: string, expectedEpoch: number, reason: string): Promise<ShardRecord> {
    await this.node.readBarrier();
    const key = SHARD_KEYS.shard(shard);
    const curText = this.node.state.kv.get(key)?.value ?? null;
    const current = curText === null ? null : (JSON.parse(curText) as ShardRecord);
    const out = promote(current, newPrimary, expectedEpoch, reason, new Date().toISOString());
    if (!out.ok) throw new HttpError(out.status, `shard ${shard}: ${out.problem}`, current ? { current } : {});
    const r = await this.node.proposeLocal({ op: 'txn', compare: [{ key, value: curText }], success: [{ op: 'put', key, value: JSON.stringify(out.record) }] });
    if (r.op !== 'txn' || !r.succeeded) {
      throw new HttpError(409, `shard ${shard}: the record changed while promoting ${newPrimary}; read it again`, { current: this.record(shard) });
    }
    this.node.log.info({ shard, primary: newPrimary, epoch: out.record.epoch, reason }, 'shard primary promoted');
    return out.record;
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
