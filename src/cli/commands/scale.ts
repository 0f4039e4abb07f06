import type { Command } from 'commander';
import { ManagerClient } from '../../client/manager-client.js';
import { DvoteError } from '../../core/errors.js';
import { desiredNodes, allPorts } from '../../core/layout.js';
import { planConverge } from '../../core/planner.js';
import { validateTopology, type Topology } from '../../core/topology.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import { parseDuration } from '../../runtime/wait.js';
import { executePlan, managerEndpoints, settledClusterStatus, TOPOLOGY_KEY, type PhaseTiming } from '../converge.js';
import type { CommandContext } from '../main.js';
import { intFlag } from '../topology-input.js';
import { renderStatus } from './status.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

/** Roles whose count `scale` can change today. */
export const SCALABLE = ['managers', 'brokers', 'shards', 'replicas'] as const;

export function registerScale(program: Command, run: Run): void {
  program
    .command('scale')
    .description('change the number of managers, brokers, shards or replicas of a running cluster')
    .option('--managers <n>', 'Raft managers (joined/removed one at a time through Raft)')
    .option('--brokers <n>', 'brokers')
    .option('--shards <n>', 'voting shards')
    .option('--replicas <n>', 'PostgreSQL replicas per shard')
    .option('--timeout <duration>', 'how long each readiness wait may take', '120s')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Managers join as learners, catch up, then become voters; removed managers
leave the group (leadership moves first if needed) before their node goes.

Examples:
  $ dvote scale --managers 5
  $ dvote scale --managers 3 --json`,
    )
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as Record<string, string | undefined>;
        const timeoutMs = parseDuration(o.timeout ?? '120s');
        if (timeoutMs === null) throw new DvoteError('USAGE', `--timeout "${o.timeout}" is not a duration`, 'use e.g. 90s');
        const counts = {
          managers: intFlag('managers', o.managers),
          brokers: intFlag('brokers', o.brokers),
          shards: intFlag('shards', o.shards),
          replicas: intFlag('replicas', o.replicas),
        };
        if (Object.values(counts).every((v) => v === undefined)) {
          throw new DvoteError('USAGE', 'nothing to scale', 'give --managers, --brokers, --shards or --replicas');
        }
        await scale(ctx, counts, timeoutMs, (o.runtime as RuntimePreference | undefined) ?? 'auto');
      }, cmd),
    );
}

export async function scale(
  ctx: CommandContext,
  counts: Partial<Record<(typeof SCALABLE)[number], number>>,
  timeoutMs: number,
  pref: RuntimePreference,
): Promise<void> {
  const cluster = ctx.globals.cluster ?? 'dvote';
  const { runtime } = await selectForCluster(cluster, pref);
  const endpoints = await managerEndpoints(runtime, cluster);
  if (endpoints.length === 0) throw new DvoteError('UNHEALTHY', `no manager of cluster "${cluster}" is running`, 'run `dvote up` first');
  const client = new ManagerClient({ endpoints, timeoutMs: 10_000 });
  let current: Topology;
  try {
    const item = await client.get(TOPOLOGY_KEY);
    if (!item) throw new DvoteError('UNHEALTHY', 'the managers hold no topology for this cluster', 'run `dvote up` to converge it first');
    current = JSON.parse(item.value) as Topology;
  } finally {
    await client.close();
  }
  const next: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(counts)) if (v !== undefined) next[k] = v;
  const r = validateTopology(next);
  if (!r.topology) throw new DvoteError('INVALID_TOPOLOGY', `cannot scale to that size (${r.errors.length} problem${r.errors.length > 1 ? 's' : ''})`, 'nothing was changed', r.errors);
  for (const w of r.warnings) ctx.out.warn(w);
  const topology = r.topology;
  const desired = desiredNodes(topology);
  const plan = planConverge(desired, await runtime.listNodes(cluster));
  const newNodes = desired.filter((d) => plan.phases.some((p) => p.steps.some((s) => s.kind === 'start' && s.reason === 'missing' && s.node.name === d.name)));
  const busy = await runtime.busyPorts(allPorts(newNodes, { includeRaft: runtime.kind === 'process' }), { cluster });
  if (busy.length > 0) throw new DvoteError('PORT_BUSY', `host ports ${busy.join(', ')} already in use`, 'free them and run again; nothing was changed');
  const timings: PhaseTiming[] = [];
  await executePlan({ runtime, topology, desired, out: ctx.out, signal: ctx.signal, timeoutMs, timings }, plan);
  const after = new ManagerClient({ endpoints: await managerEndpoints(runtime, cluster), timeoutMs: 15_000 });
  try {
    await after.put(TOPOLOGY_KEY, JSON.stringify(topology));
  } finally {
    await after.close();
  }
  const status = await settledClusterStatus({ runtime, out: ctx.out, signal: ctx.signal }, cluster, timeoutMs);
  ctx.out.document({ schema: 'dvote.scale/v1', cluster, runtime: runtime.kind, from: pick(current), to: pick(topology), phases: timings, status });
  if (!ctx.out.json) ctx.out.print(renderStatus(status, ctx.out));
  if (!status.healthy) ctx.setExitCode(1);
}

function pick(t: Topology): Record<string, number> {
  return { managers: t.managers, brokers: t.brokers, shards: t.shards, replicas: t.replicas };
}
