import { Option, type Command } from 'commander';
import { DvoteError } from '../../core/errors.js';
import { allPorts, desiredNodes } from '../../core/layout.js';
import { planConverge } from '../../core/planner.js';
import { REPLICATION_MODES, RUNTIMES, type Topology } from '../../core/topology.js';
import { selectForUp, type RuntimePreference } from '../../runtime/select.js';
import { parseDuration } from '../../runtime/wait.js';
import { ManagerClient } from '../../client/manager-client.js';
import type { StatusDoc } from '../cluster-status.js';
import { executePlan, managerEndpoints, settledClusterStatus, TOPOLOGY_KEY, type PhaseTiming } from '../converge.js';
import type { CommandContext } from '../main.js';
import { intFlag, loadTopology } from '../topology-input.js';
import { renderStatus } from './status.js';

export interface UpOptions {
  file?: string;
  cluster?: string;
  managers?: number;
  brokers?: number;
  shards?: number;
  replicas?: number;
  replication?: string;
  runtime?: string;
  portBase?: number;
  timeoutMs: number;
  /** Other topology keys set by code (e.g. the bench matrix's shard map). */
  extra?: Record<string, unknown>;
}

export interface UpDoc {
  schema: 'dvote.up/v1';
  cluster: string;
  runtime: string;
  runtimeReason: string;
  created: string[];
  unchanged: string[];
  phases: PhaseTiming[];
  totalMs: number;
  warnings: string[];
  /** Nodes left running on another build of dvote (another image or node program). */
  stale: string[];
  topology: Topology;
  status: StatusDoc;
}

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerUp(program: Command, run: Run): void {
  program
    .command('up')
    .description('create or converge a cluster to the requested topology (idempotent)')
    .option('-f, --file <topology.yaml>', 'topology file (presets in templates/topology/)')
    .option('--managers <n>', 'Raft managers (1-7; odd is best)')
    .option('--brokers <n>', 'brokers holding the replicated vote log')
    .option('--shards <n>', 'voting shards')
    .option('--replicas <n>', 'PostgreSQL replicas per shard, besides the primary')
    .addOption(new Option('--replication <mode>', 'how a vote is replicated before it is acknowledged').choices([...REPLICATION_MODES]))
    .addOption(new Option('--runtime <kind>', 'where nodes run').choices([...RUNTIMES]))
    .option('--port-base <port>', 'first host port of the cluster (default: 7100 for "dvote", a block per other name)')
    .option('--timeout <duration>', 'how long each readiness wait may take', '120s')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote up                                   # the default topology
  $ dvote up --managers 3 --brokers 0 --shards 0 --runtime process
  $ dvote up -f templates/topology/disvote-2shards.yaml
  $ dvote up --cluster ci --json | jq .phases

Runs nodes in Docker when a daemon answers, else as local processes (--runtime to choose).
Returns when the managers have a leader and every member applied the latest membership.`,
    )
    .action(async (_opts, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as Record<string, string | undefined>;
        const timeoutMs = parseDuration(o.timeout ?? '120s');
        if (timeoutMs === null) throw new DvoteError('USAGE', `--timeout "${o.timeout}" is not a duration`, 'use e.g. 90s or 2m');
        await up(ctx, {
          ...(o.file ? { file: o.file } : {}),
          ...(ctx.globals.cluster ? { cluster: ctx.globals.cluster } : {}),
          managers: intFlag('managers', o.managers),
          brokers: intFlag('brokers', o.brokers),
          shards: intFlag('shards', o.shards),
          replicas: intFlag('replicas', o.replicas),
          ...(o.replication ? { replication: o.replication } : {}),
          ...(o.runtime ? { runtime: o.runtime } : {}),
          portBase: intFlag('port-base', o.portBase),
          timeoutMs,
        });
      }, cmd),
    );
}

export async function up(ctx: CommandContext, opts: UpOptions): Promise<UpDoc> {
  const { out } = ctx;
  const t0 = performance.now();
  const timings: PhaseTiming[] = [];
  const flags: Record<string, unknown> = {
    cluster: opts.cluster,
    managers: opts.managers,
    brokers: opts.brokers,
    shards: opts.shards,
    replicas: opts.replicas,
    replication: opts.replication,
    runtime: opts.runtime,
    ...(opts.portBase !== undefined ? { ports: { base: opts.portBase } } : {}),
    ...(opts.extra ?? {}),
  };
  const { topology, warnings } = loadTopology(opts.file, flags);
  for (const w of warnings) out.warn(w);

  let t = performance.now();
  const sel = await selectForUp(topology.runtime as RuntimePreference);
  timings.push({ name: 'runtime', ms: Math.round(performance.now() - t) });
  out.info(`${out.c.bold('runtime')}: ${sel.info.description} (${sel.reason})`);
  const runtime = sel.runtime;
  const cluster = topology.cluster;

  const observed = await runtime.listNodes(cluster);
  const desired = desiredNodes(topology);
  const plan = planConverge(desired, observed);

  if (!plan.bootstrap) await checkCompatible(runtime, cluster, topology);

  // Busy ports are refused before anything is created.
  const missing = new Set(plan.phases.flatMap((p) => p.steps).flatMap((s) => (s.kind === 'start' && s.reason === 'missing' ? [s.node.name] : [])));
  const newNodes = desired.filter((d) => missing.has(d.name));
  const busy = await runtime.busyPorts(allPorts(newNodes, { includeRaft: runtime.kind === 'process' }), { cluster });
  if (busy.length > 0) {
    throw new DvoteError(
      'PORT_BUSY',
      `host port${busy.length > 1 ? 's' : ''} ${busy.slice(0, 5).join(', ')}${busy.length > 5 ? ', ...' : ''} already in use`,
      `free ${busy.length > 1 ? 'them' : 'it'}, or give this cluster other ports with --port-base (it uses ${topology.ports.base}-${topology.ports.base + 599})`,
    );
  }

  t = performance.now();
  await out.step(runtime.kind === 'docker' ? 'preparing network and image' : 'preparing state folder', (update) =>
    runtime.prepareCluster(cluster, { onProgress: update, signal: ctx.signal }),
  );
  timings.push({ name: 'prepare', ms: Math.round(performance.now() - t) });

  const { created } = await executePlan({ runtime, topology, desired, out, signal: ctx.signal, timeoutMs: opts.timeoutMs, timings }, plan);
  if (plan.phases.length === 0) out.info(`cluster "${cluster}" already matches the topology (${desired.length} nodes); nothing to do`);

  // Remember the topology in the managers (scale and bench read it back).
  const endpoints = await managerEndpoints(runtime, cluster);
  const client = new ManagerClient({ endpoints, timeoutMs: 15_000 });
  try {
    await client.put(TOPOLOGY_KEY, JSON.stringify(topology));
  } finally {
    await client.close();
  }

  const status = await settledClusterStatus({ runtime, out: out, signal: ctx.signal }, cluster, opts.timeoutMs);
  // up never restarts a running node by itself (that would be a failover for
  // a primary, and a lost quorum if done to every manager at once): it names
  // the nodes a new build of dvote would replace.
  const stale = (await runtime.staleNodes(cluster)).filter((n) => !created.includes(n));
  if (stale.length > 0) {
    const msg = staleWarning(stale, runtime.kind);
    warnings.push(msg);
    out.warn(msg);
  }
  const doc: UpDoc = {
    schema: 'dvote.up/v1',
    cluster,
    runtime: runtime.kind,
    runtimeReason: sel.reason,
    created,
    unchanged: plan.unchanged,
    phases: timings,
    totalMs: Math.round(performance.now() - t0),
    warnings,
    stale,
    topology,
    status,
  };
  if (out.json) out.document(doc);
  else {
    out.print(renderStatus(status, out));
    out.info(`ready in ${(doc.totalMs / 1000).toFixed(1)}s; try: dvote status, dvote kill --role manager --leader, dvote down`);
  }
  if (!status.healthy) ctx.setExitCode(1);
  return doc;
}

/** One line naming the nodes on another build and the way to move them (pure). */
export function staleWarning(stale: string[], runtime: string): string {
  const what = runtime === 'docker' ? 'an image from another build of dvote' : 'a node program from another build of dvote';
  const names = stale.length > 4 ? `${stale.slice(0, 4).join(', ')}, ... (${stale.length} in all)` : stale.join(', ');
  return `${stale.length === 1 ? `${names} runs` : `${names} run`} ${what}; up does not restart running nodes: \`dvote down && dvote up\` restarts them on this build and keeps their data`;
}

/** Settings that cannot change on a running cluster (counts can: that is scaling). */
async function checkCompatible(runtime: Awaited<ReturnType<typeof selectForUp>>['runtime'], cluster: string, wanted: Topology): Promise<void> {
  const endpoints = await managerEndpoints(runtime, cluster);
  if (endpoints.length === 0) return; // managers down: up will restart them; nothing to compare yet
  const client = new ManagerClient({ endpoints, timeoutMs: 5_000 });
  try {
    const item = await client.get(TOPOLOGY_KEY).catch(() => null);
    if (!item) return;
    const current = JSON.parse(item.value) as Topology;
    const fixed: (keyof Topology)[] = ['replication', 'shardMap', 'ballot', 'voterIds'];
    const changed = fixed.filter((k) => JSON.stringify(current[k]) !== JSON.stringify(wanted[k]));
    if (changed.length > 0) {
      throw new DvoteError(
        'INVALID_TOPOLOGY',
        `cluster "${cluster}" runs with a different ${changed.join(', ')} (${changed.map((k) => `${k}=${JSON.stringify(current[k])}`).join(', ')})`,
        'these cannot change on a running cluster: `dvote down --volumes` first, or pick another --cluster',
      );
    }
  } finally {
    await client.close();
  }
}
