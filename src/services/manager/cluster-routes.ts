// Membership of the manager group (used by `dvote scale --managers`) and
// leadership transfer. Single-server changes: a new manager joins as a
// learner, catches up, then is promoted to voter; removing the leader first
// hands leadership to another voter.
import type { FastifyRequest } from 'fastify';
import { HttpError, type ManagerNode } from './manager-node.js';
import { KEYS, type MemberRecord } from './manager-state.js';

const hostPort = /^[^:\s]+:\d{1,5}$/;

export function registerClusterRoutes(node: ManagerNode): void {
  const app = node.app;

  app.get('/v1/members', async () => {
    await node.readBarrier();
    const s = node.group.status();
    const members = [...s.conf.voters.map((id) => ({ id, voter: true })), ...s.conf.learners.map((id) => ({ id, voter: false }))];
    return {
      leader: s.leader,
      term: s.term,
      members: members.map((m) => ({ ...m, http: node.memberAddress(m.id) ?? null, raft: node.host.resolve(m.id) ?? null })),
    };
  });

  app.post('/v1/members', async (req: FastifyRequest) => {
    const body = req.body as Partial<MemberRecord> | undefined;
    if (!body || typeof body.id !== 'string' || !body.id || typeof body.http !== 'string' || typeof body.raft !== 'string') {
      throw new HttpError(400, 'body must be {"id": string, "http": "host:port", "raft": "host:port"}');
    }
    if (!hostPort.test(body.http) || !hostPort.test(body.raft)) throw new HttpError(400, 'http and raft must be "host:port"');
    if (!node.group.isLeader) return forward(node, req);
    const rec: MemberRecord = { id: body.id, http: body.http, raft: body.raft };
    const conf = node.group.status().conf;
    if (conf.voters.includes(rec.id)) return { id: rec.id, voter: true, changed: false };
    await node.proposeLocal({ op: 'put', key: KEYS.member(rec.id), value: JSON.stringify(rec) });
    node.host.setPeerAddress(rec.id, rec.raft);
    if (!conf.learners.includes(rec.id)) {
      await node.group.changeMembership({ type: 'addLearner', node: rec.id, address: rec.raft }).catch((e) => {
        throw node.translate(e);
      });
    }
    // Promote only once the learner holds (nearly) the whole log, so the
    // quorum never waits on a node that is still catching up.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = node.group.status();
      const pr = s.progress.find((p) => p.id === rec.id);
      if (pr && pr.match >= s.lastIndex - 10) break;
      if (Date.now() > deadline) {
        throw new HttpError(504, `learner ${rec.id} did not catch up within 30 s; it stays a learner (is it running and reachable at ${rec.raft}?)`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await node.group.changeMembership({ type: 'addVoter', node: rec.id, address: rec.raft }).catch((e) => {
      throw node.translate(e);
    });
    return { id: rec.id, voter: true, changed: true };
  });

  app.delete('/v1/members/:id', async (req: FastifyRequest) => {
    const id = (req.params as { id: string }).id;
    if (!node.group.isLeader) return forward(node, req);
    const s = node.group.status();
    if (!s.conf.voters.includes(id) && !s.conf.learners.includes(id)) return { id, removed: false, reason: 'not a member' };
    if (id === node.config.id) {
      // Hand leadership to the most caught-up other voter, then let it remove us.
      const target = s.progress
        .filter((p) => p.id !== id && !p.isLearner)
        .sort((a, b) => b.match - a.match)[0];
      if (!target) throw new HttpError(409, 'cannot remove the only voter');
      node.group.transferLeadership(target.id);
      const deadline = Date.now() + 5_000;
      while (node.group.isLeader && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (node.group.isLeader) throw new HttpError(503, 'leadership transfer did not finish; retry');
      return forward(node, req);
    }
    await node.group.changeMembership({ type: 'removeNode', node: id }).catch((e) => {
      throw node.translate(e);
    });
    await node.proposeLocal({ op: 'delete', key: KEYS.member(id) });
    return { id, removed: true };
  });

  // Heartbeats from every non-manager node; only the leader keeps them.
  app.post('/v1/heartbeat', async (req: FastifyRequest) => {
    const b = req.body as { id?: unknown; role?: unknown; http?: unknown; info?: unknown } | undefined;
    if (!b || typeof b.id !== 'string' || typeof b.role !== 'string' || typeof b.http !== 'string') {
      throw new HttpError(400, 'body must be {"id": string, "role": string, "http": "host:port", "info"?: object}');
    }
    if (!node.group.isLeader) return forward(node, req);
    node.liveness.heartbeat({ id: b.id, role: b.role, http: b.http, ...(b.info && typeof b.info === 'object' ? { info: b.info as Record<string, unknown> } : {}) });
    return { ok: true, leader: node.config.id, heartbeatMs: node.liveness.heartbeatMs, timeoutMs: node.liveness.detector.timeoutMs };
  });

  // The replicated liveness records; the leader adds what it heard most recently.
  app.get('/v1/nodes', async () => {
    await node.readBarrier();
    const now = Date.now();
    const view = node.liveness.active ? new Map(node.liveness.detector.view(now).map((b) => [b.id, b])) : null;
    return {
      servedBy: node.config.id,
      detectorOnThisNode: node.liveness.active,
      nodes: node.liveness.records().map((r) => ({ ...r, ...(view?.get(r.id) ? { silentMs: view.get(r.id)!.silentMs, info: view.get(r.id)!.info } : {}) })),
    };
  });

  app.post('/v1/leader/transfer', async (req: FastifyRequest) => {
    const body = req.body as { to?: string } | undefined;
    if (!body?.to) throw new HttpError(400, 'body must be {"to": "<manager id>"}');
    if (!node.group.isLeader) return forward(node, req);
    node.group.transferLeadership(body.to);
    return { transferring: true, from: node.config.id, to: body.to };
  });
}

async function forward(node: ManagerNode, req: FastifyRequest): Promise<never> {
  throw await node.forwardToLeader(req);
}
