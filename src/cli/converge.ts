// Execute a plan against a runtime: start/remove nodes, join/leave managers
// through Raft, and wait after each phase until the system's real state says
// it is ready (a leader elected and every member on the latest configuration,
// not merely a port that opens).
import { ManagerClient, ManagerRequestError } from '../client/manager-client.js';
import { DvoteError } from '../core/errors.js';
import type { DesiredNode } from '../core/layout.js';
import type { Plan, Step } from '../core/planner.js';
import { buildSpec, type SpecContext } from '../core/specs.js';
import { shardInitRequest, type ShardRecord } from '../core/shard-records.js';
import type { Topology } from '../core/topology.js';
import type { ObservedNode, Runtime } from '../runtime/runtime.js';
import { waitFor } from '../runtime/wait.js';
import { collectStatus, fetchHealth, SETTLE_MS, settleStatus, type StatusDoc } from './cluster-status.js';
import type { Output } from './output/output.js';

export interface PhaseTiming {
  name: string;
  ms: number;
}

export interface ConvergeContext {
  runtime: Runtime;
  topology: Topology;
  desired: DesiredNode[];
  out: Output;
  signal: AbortSignal;
  /** Budget for each wait. */
  timeoutMs: number;
  timings: PhaseTiming[];
}

export const TOPOLOGY_KEY = '/dvote/topology';

/** Managers' HTTP endpoints reachable from here, for the running managers of the cluster. */
export async function managerEndpoints(runtime: Runtime, cluster: string): Promise<string[]> {
  const nodes = await runtime.listNodes(cluster);
  return nodes.filter((n) => n.role === 'manager' && n.state === 'running').map((n) => n.endpoint);
}

export async function executePlan(ctx: ConvergeContext, plan: Plan): Promise<{ created: string[] }> {
  const { runtime, topology, out } = ctx;
  const specCtx: SpecContext = {
    topology,
    addressing: runtime.addressing(topology.cluster),
    managers: ctx.desired.filter((d) => d.role === 'manager'),
    bootstrap: plan.bootstrap,
  };
  const created: string[] = [];
  try {
    for (const phase of plan.phases) {
      const t0 = performance.now();
      await out.step(phase.name, async (update) => {
        // Replicas leave the shard records before their nodes go; a primary
        // about to go hands over to a replica that stays first.
        const removing = phase.steps.filter((s): s is Extract<Step, { kind: 'remove' }> => s.kind === 'remove' && s.role === 'postgres').map((s) => s.name);
        if (removing.length > 0) {
          await handOverPrimaries(ctx, removing, update);
          await initShardRecords(ctx, specCtx, update);
        }
        for (const step of phase.steps) {
          if (ctx.signal.aborted) throw new DvoteError('TIMEOUT', 'interrupted', 'run `dvote up` again to converge, or `dvote down`');
          update(describe(step));
          await runStep(ctx, specCtx, step, created);
        }
        if (phase.waitFor) await waitReady(ctx, phase.waitFor, update);
        if (phase.waitFor === 'postgres') await initShardRecords(ctx, specCtx, update);
        // A primary takes writes once its shard service attached (the vote
        // log's barrier), so copies are judged after the services start, or
        // right away when no service starts in this run (scale --replicas).
        if (phase.waitFor === 'shards' || (phase.waitFor === 'postgres' && !plan.phases.some((p) => p.waitFor === 'shards'))) {
          await waitCopies(ctx, update);
        }
      });
      ctx.timings.push({ name: phase.name, ms: Math.round(performance.now() - t0) });
    }
    return { created };
  } catch (e) {
    if (created.length > 0) {
      out.warn(`undoing this run: removing ${created.length} node(s) it created`);
      if (plan.bootstrap) {
        await runtime.removeCluster(topology.cluster, { volumes: true }).catch(() => undefined);
      } else {
        for (const name of created.reverse()) await runtime.remove(topology.cluster, name, { volumes: true }).catch(() => undefined);
      }
    }
    throw e;
  }
}

function describe(s: Step): string {
  switch (s.kind) {
    case 'start':
      return `${s.reason === 'missing' ? 'creating' : `restarting (${s.reason})`} ${s.node.name}`;
    case 'joinManager':
      return `adding ${s.node.name} to the manager group`;
    case 'leaveManager':
      return `removing ${s.name} from the manager group`;
    case 'remove':
      return `removing ${s.name}`;
  }
}

async function runStep(ctx: ConvergeContext, specCtx: SpecContext, step: Step, created: string[]): Promise<void> {
  const { runtime, topology } = ctx;
  switch (step.kind) {
    case 'start': {
      await runtime.start(buildSpec(step.node, specCtx));
      if (step.reason === 'missing') created.push(step.node.name);
      return;
    }
    case 'joinManager': {
      const a = specCtx.addressing;
      const client = await managerClient(runtime, topology.cluster, [step.node.name]);
      try {
        await client.request('POST', '/v1/members', {
          id: step.node.name,
          http: a.internal(step.node.name, 'http', step.node.ports.http),
          raft: a.internal(step.node.name, 'raft', step.node.ports.raft!),
        });
      } finally {
        await client.close();
      }
      return;
    }
    case 'leaveManager': {
      const client = await managerClient(runtime, topology.cluster, []);
      try {
        await client.request('DELETE', `/v1/members/${step.name}`);
      } finally {
        await client.close();
      }
      return;
    }
    case 'remove':
      await runtime.remove(topology.cluster, step.name, { volumes: true });
      return;
  }
}

/** Tell the managers the shards' nodes (POST /v1/shards/init: idempotent) before shard services start. */
async function initShardRecords(ctx: ConvergeContext, specCtx: SpecContext, update: (s: string) => void): Promise<void> {
  update('recording shards in the managers');
  const body = shardInitRequest(ctx.topology, ctx.desired, (node, service, port) => specCtx.addressing.internal(node, service, port));
  const client = await managerClient(ctx.runtime, ctx.topology.cluster, []);
  try {
    await client.request('POST', '/v1/shards/init', body);
  } catch (e) {
    if (e instanceof ManagerRequestError) throw new DvoteError('INVALID_TOPOLOGY', `the managers refused the shard layout: ${e.message}`, 'keep the shard count and map of a running cluster, or `dvote down --volumes` first');
    throw e;
  } finally {
    await client.close();
  }
}

/**
 * Before PostgreSQL nodes are removed (scale --replicas down): a shard whose
 * primary is among them promotes the most caught-up replica that stays (the
 * managers' promote, a compare-and-set at the current epoch), and we wait
 * until its shard service writes to the new primary. Acknowledged votes are
 * safe across the switch in log and sync modes (they are in the vote log);
 * in async mode, votes not yet shipped from the old primary are at risk, as
 * in any failover, so this waits for its outbox to drain first.
 */
async function handOverPrimaries(ctx: ConvergeContext, removing: string[], update: (s: string) => void): Promise<void> {
  const client = await managerClient(ctx.runtime, ctx.topology.cluster, []);
  try {
    const view = (await client.request('GET', '/v1/shards')).body as unknown as { shards: ShardRecord[] };
    const nodes = await ctx.runtime.listNodes(ctx.topology.cluster);
    for (const rec of view.shards ?? []) {
      if (!removing.includes(rec.primary)) continue;
      const staying = rec.replicas.filter((r) => !removing.includes(r));
      const offsets = await Promise.all(
        staying.map(async (name) => {
          const n = nodes.find((x) => x.name === name);
          const h = n ? await fetchHealth(n.endpoint) : { error: 'no node' };
          return { name, ok: !('error' in h) && h.body.state === 'replica', offset: 'error' in h ? -1 : Number(h.body.appliedOffset ?? -1) };
        }),
      );
      const best = offsets.filter((o) => o.ok).sort((a, b) => b.offset - a.offset)[0];
      if (!best) {
        throw new DvoteError(
          'UNHEALTHY',
          `shard ${rec.shard}: its primary ${rec.primary} would be removed and no remaining replica is ready to take over`,
          'keep more replicas, or wait until the replicas report state "replica" in `dvote status`',
        );
      }
      if (rec.mode === 'async') {
        update(`shard ${rec.shard}: waiting for ${rec.primary}'s outbox to reach the vote log`);
        const svc = nodes.find((x) => x.name === rec.service);
        await waitFor(
          `shard ${rec.shard}'s service to have shipped every acknowledged vote to the log`,
          async () => {
            const h = svc ? await fetchHealth(svc.endpoint) : { error: 'no service' };
            if ('error' in h) return { done: false, reason: h.error };
            return Number(h.body.atRisk ?? 0) === 0 ? { done: true, value: undefined } : { done: false, reason: `${String(h.body.atRisk)} vote(s) at risk` };
          },
          { timeoutMs: ctx.timeoutMs, intervalMs: 100, signal: ctx.signal, onPending: update },
        );
      }
      update(`shard ${rec.shard}: handing the primary over from ${rec.primary} to ${best.name}`);
      const promoted = (await client.request('POST', `/v1/shards/${rec.shard}/promote`, { primary: best.name, epoch: rec.epoch, reason: `scale: ${rec.primary} is being removed` }))
        .body as unknown as ShardRecord;
      const svc = nodes.find((x) => x.name === rec.service);
      await waitFor(
        `shard ${rec.shard}'s service to write to ${best.name} at epoch ${promoted.epoch}`,
        async () => {
          const h = svc ? await fetchHealth(svc.endpoint) : { error: 'no service' };
          if ('error' in h) return { done: false, reason: h.error };
          const ok = h.status === 200 && Number(h.body.epoch) === promoted.epoch;
          return ok ? { done: true, value: undefined } : { done: false, reason: String(h.body.reason ?? `at epoch ${String(h.body.epoch)}`) };
        },
        { timeoutMs: ctx.timeoutMs, intervalMs: 100, signal: ctx.signal, onPending: update },
      );
    }
  } catch (e) {
    if (e instanceof ManagerRequestError) throw new DvoteError('UNHEALTHY', `the managers refused to hand a shard primary over: ${e.message}`, 'check `dvote status` and try again');
    throw e;
  } finally {
    await client.close();
  }
}

async function managerClient(runtime: Runtime, cluster: string, exclude: string[]): Promise<ManagerClient> {
  const nodes = await runtime.listNodes(cluster);
  const endpoints = nodes
    .filter((n) => n.role === 'manager' && n.state === 'running' && !exclude.includes(n.name))
    .map((n) => n.endpoint);
  if (endpoints.length === 0) {
    throw new DvoteError('UNHEALTHY', `no running manager in cluster "${cluster}" to ask`, 'run `dvote up` to restart them');
  }
  return new ManagerClient({ endpoints, timeoutMs: 45_000 });
}

/**
 * Every PostgreSQL copy does what its shard record says: a new replica is
 * seeded and applying, a returning deposed primary has rejoined (a port that
 * answers is not enough).
 */
async function waitCopies(ctx: ConvergeContext, update: (s: string) => void): Promise<void> {
  const wanted = ctx.desired.filter((d) => d.role === 'postgres').map((d) => d.name);
  if (wanted.length === 0) return;
  await waitFor(
    `every PostgreSQL copy (${wanted.join(', ')}) to be its shard's primary or a replica that applies the vote log`,
    async () => {
      const nodes = await ctx.runtime.listNodes(ctx.topology.cluster);
      for (const name of wanted) {
        const n = nodes.find((x) => x.name === name);
        if (!n) return { done: false, reason: `${name} does not exist` };
        const h = await fetchHealth(n.endpoint);
        if ('error' in h) return { done: false, reason: `${name}: ${h.error}` };
        const state = String(h.body.state);
        if (state !== 'primary' && state !== 'replica') return { done: false, reason: `${name} is ${state}` };
      }
      return { done: true, value: undefined };
    },
    { timeoutMs: ctx.timeoutMs, intervalMs: 100, signal: ctx.signal, onPending: update },
  );
}

async function waitReady(ctx: ConvergeContext, what: 'managers' | 'brokers' | 'postgres' | 'shards', update: (s: string) => void): Promise<void> {
  const role = { managers: 'manager', brokers: 'broker', postgres: 'postgres', shards: 'shard' }[what];
  const wanted = ctx.desired.filter((d) => d.role === role).map((d) => d.name);
  if (wanted.length === 0) return;
  if (what === 'managers') {
    await waitFor(
      `a manager leader with every member (${wanted.join(', ')}) on the latest configuration`,
      async () => managersReady(ctx, wanted),
      { timeoutMs: ctx.timeoutMs, intervalMs: 50, signal: ctx.signal, onPending: update },
    );
    return;
  }
  await waitFor(
    `${what} (${wanted.join(', ')}) to report healthy`,
    async () => {
      const nodes = await ctx.runtime.listNodes(ctx.topology.cluster);
      for (const name of wanted) {
        const n = nodes.find((x) => x.name === name);
        if (!n) return { done: false, reason: `${name} does not exist` };
        if (n.state !== 'running') return { done: false, reason: `${name} is ${n.state}` };
        const h = await fetchHealth(n.endpoint);
        if ('error' in h) return { done: false, reason: `${name}: ${h.error}` };
        if (h.status !== 200) return { done: false, reason: `${name}: ${String(h.body.reason ?? h.body.error ?? h.status)}` };
      }
      return { done: true, value: undefined };
    },
    { timeoutMs: ctx.timeoutMs, intervalMs: 100, signal: ctx.signal, onPending: update },
  );
}

/**
 * Ready = every wanted manager answers, all agree on one leader and term, the
 * leader's voters are exactly the wanted set (no learner left), and every
 * member has applied up to the leader's commit index.
 */
export async function managersReady(
  ctx: { runtime: Runtime; topology: Topology },
  wanted: string[],
): Promise<{ done: true; value: { leader: string; term: number } } | { done: false; reason: string }> {
  const nodes = await ctx.runtime.listNodes(ctx.topology.cluster);
  const byName = new Map<string, ObservedNode>(nodes.map((n) => [n.name, n]));
  const healths: Record<string, Record<string, unknown>> = {};
  for (const name of wanted) {
    const n = byName.get(name);
    if (!n) return { done: false, reason: `${name} does not exist` };
    if (n.state !== 'running') return { done: false, reason: `${name} is ${n.state}` };
    const h = await fetchHealth(n.endpoint);
    if ('error' in h) return { done: false, reason: `${name} not answering yet` };
    healths[name] = h.body;
  }
  const leaders = new Set(wanted.map((w) => String(healths[w]!.leader ?? '')));
  const terms = new Set(wanted.map((w) => Number(healths[w]!.term ?? -1)));
  if (leaders.size !== 1 || leaders.has('')) return { done: false, reason: 'electing a leader' };
  if (terms.size !== 1) return { done: false, reason: 'members disagree on the term' };
  const leader = [...leaders][0]!;
  const lh = healths[leader];
  if (!lh) return { done: false, reason: `leader ${leader} is not one of the wanted managers` };
  const voters = new Set((lh.voters as string[] | undefined) ?? []);
  const learners = (lh.learners as string[] | undefined) ?? [];
  const same = voters.size === wanted.length && wanted.every((w) => voters.has(w)) && learners.length === 0;
  if (!same) return { done: false, reason: `membership is [${[...voters].join(', ')}]${learners.length ? ` + learners [${learners.join(', ')}]` : ''}` };
  const commit = Number(lh.commitIndex ?? 0);
  const behind = wanted.filter((w) => Number(healths[w]!.appliedIndex ?? 0) < commit);
  if (behind.length > 0) return { done: false, reason: `${behind.join(', ')} catching up to index ${commit}` };
  return { done: true, value: { leader, term: Number(lh.term) } };
}

/**
 * The status `up` and `scale` end with: checked once, and only when it is
 * not healthy yet, again for up to SETTLE_MS (bounded by the command's
 * timeout) with a progress line, since nodes just started can leave a
 * partition or the managers in an election for a moment.
 */
export async function settledClusterStatus(
  ctx: { runtime: Runtime; out: Output; signal: AbortSignal },
  cluster: string,
  timeoutMs: number,
): Promise<StatusDoc> {
  const collect = () => collectStatus(ctx.runtime, cluster);
  const first = await collect();
  if (first.healthy) return first;
  return ctx.out.step('waiting for the cluster to settle', (update) =>
    settleStatus(collect, { settleMs: Math.min(SETTLE_MS, timeoutMs), signal: ctx.signal, onPending: update, first }),
  );
}
