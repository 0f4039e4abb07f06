// HTTP routes of the shard records (see shard-service.ts):
//   GET  /v1/shards               {topology, shardMap, shards: [ShardRecord], revision, linearizable, servedBy}
//   GET  /v1/shards/:shard        ShardRecord (+ linearizable, servedBy) or 404
//   POST /v1/shards/init          {topology, shards: [{shard, service, postgres}]} -> {..., changed, warnings}
//   POST /v1/shards/:shard/promote {primary, epoch, reason?} -> ShardRecord at epoch+1, or 409 {error, current}
//   POST /v1/shards/:shard/rejoin  {node, epoch, lost?}      a fenced copy, seeded again, becomes a replica
//                                                             -> ShardRecord, or 409 {error, current}
// The failover loop (shard-service.ts) starts with the routes; it acts only
// on the leader.
// Reads are linearizable (ReadIndex) unless ?stale=true; writes run on the
// leader (followers forward them).
import type { FastifyRequest } from 'fastify';
import { HttpError, type ManagerNode } from './manager-node.js';
import { ShardDirectoryService } from './shard-service.js';

export function registerShardRoutes(node: ManagerNode): ShardDirectoryService {
  const app = node.app;
  const shards = new ShardDirectoryService(node);

  const readMode = async (req: FastifyRequest) => {
    const stale = (req.query as Record<string, string> | undefined)?.stale === 'true';
    if (!stale) await node.readBarrier();
    return { linearizable: !stale, servedBy: node.config.id };
  };

  app.get('/v1/shards', async (req) => {
    const meta = await readMode(req);
    return { ...shards.view(), ...meta };
  });

  app.get('/v1/shards/:shard', async (req, reply) => {
    const s = shardParam(req);
    const meta = await readMode(req);
    const rec = shards.record(s);
    if (!rec) return reply.code(404).send({ error: `no record for shard ${s} (is the cluster up with that many shards? try: dvote status)`, ...meta });
    return { ...rec, ...meta };
  });

  app.post('/v1/shards/init', async (req) => {
    if (!node.group.isLeader) throw await node.forwardToLeader(req);
    return shards.init(req.body);
  });

  app.post('/v1/shards/:shard/promote', async (req) => {
    const s = shardParam(req);
    const b = req.body as { primary?: unknown; epoch?: unknown; reason?: unknown } | undefined;
    if (!b || typeof b.primary !== 'string' || typeof b.epoch !== 'number' || !Number.isInteger(b.epoch)) {
      throw new HttpError(400, 'body must be {"primary": "<replica node name>", "epoch": <the current epoch>, "reason"?: string}');
    }
    if (!node.group.isLeader) throw await node.forwardToLeader(req);
    return shards.promote(s, b.primary, b.epoch, typeof b.reason === 'string' ? b.reason.slice(0, 200) : 'requested');
  });

  app.post('/v1/shards/:shard/rejoin', async (req) => {
    const s = shardParam(req);
    const b = req.body as { node?: unknown; epoch?: unknown; lost?: unknown } | undefined;
    const lostOk = b?.lost === undefined || b.lost === null || (typeof b.lost === 'number' && Number.isInteger(b.lost) && b.lost >= 0);
    if (!b || typeof b.node !== 'string' || typeof b.epoch !== 'number' || !Number.isInteger(b.epoch) || !lostOk) {
      throw new HttpError(400, 'body must be {"node": "<fenced node name>", "epoch": <the current epoch>, "lost"?: <votes it held that the primary lacked> | null}');
    }
    if (!node.group.isLeader) throw await node.forwardToLeader(req);
    return shards.rejoin(s, b.node, b.epoch, typeof b.lost === 'number' ? b.lost : null);
  });

  shards.startFailover();
  app.addHook('onClose', async () => shards.stopFailover());
  return shards;
}

function shardParam(req: FastifyRequest): number {
  const raw = (req.params as { shard: string }).shard;
  if (!/^[1-9]\d{0,3}$/.test(raw)) throw new HttpError(400, `shard must be a number from 1, not "${raw.slice(0, 20)}"`);
  return Number(raw);
}
