import type { Command } from 'commander';
import { request } from 'undici';
import { parsePrometheus, sumOf, maxOf, type MetricFamilies } from '../../bench/prometheus.js';
import { DvoteError } from '../../core/errors.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import { parseDuration, sleep } from '../../runtime/wait.js';
import { collectStatus, type StatusNode } from '../cluster-status.js';
import type { CommandContext } from '../main.js';
import { renderTable } from '../output/table.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export interface ReportNode {
  name: string;
  role: string;
  healthy: boolean;
  state: string;
  endpoint: string;
  problem?: string;
  metrics: {
    raftTerm: number | null;
    commitIndex: number | null;
    appliedIndex: number | null;
    isLeader: boolean | null;
    leaderChanges: number | null;
    replicationLag: number | null;
    votesStored: number | null;
    /** HTTP requests per second over the sampling window. */
    requestRate: number | null;
    /** HTTP 5xx answers per second over the window. */
    errorRate: number | null;
    requestsTotal: number | null;
    errorsTotal: number | null;
    cpuSeconds: number | null;
    residentMemoryBytes: number | null;
    /** Every dvote_* metric, summed over its labels. */
    dvote: Record<string, number>;
  };
}

export interface ReportDoc {
  schema: 'dvote.report/v1';
  cluster: string;
  runtime: string;
  healthy: boolean;
  managerLeader: string | null;
  problems: string[];
  windowMs: number;
  generatedAt: string;
  nodes: ReportNode[];
}

export function registerReport(program: Command, run: Run): void {
  program
    .command('report')
    .description("health and throughput from every node's /health and /metrics, in one document; exits 1 when anything is unhealthy")
    .option('--window <duration>', 'sample /metrics twice this far apart to compute rates', '1s')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote report
  $ dvote report --json | jq '.nodes[] | {name, lag: .metrics.replicationLag}'
  $ dvote report --json > report.json || echo "cluster unhealthy"`,
    )
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { window: string; runtime?: RuntimePreference };
        const windowMs = parseDuration(o.window);
        if (windowMs === null || windowMs > 60_000) throw new DvoteError('USAGE', `--window "${o.window}" is not a duration up to 60s`, 'use e.g. 1s');
        const cluster = ctx.globals.cluster ?? 'dvote';
        const { runtime } = await selectForCluster(cluster, o.runtime ?? 'auto');
        const doc = await buildReport(runtime, cluster, windowMs, ctx.signal);
        if (ctx.out.json) ctx.out.document(doc);
        else ctx.out.print(renderReport(doc));
        if (!doc.healthy) ctx.setExitCode(1);
      }, cmd),
    );
}

async function scrape(endpoint: string): Promise<MetricFamilies | null> {
  try {
    const res = await request(`${endpoint}/metrics`, { headersTimeout: 2000, bodyTimeout: 2000 });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return null;
    }
    return parsePrometheus(await res.body.text());
  } catch {
    return null;
  }
}

export async function buildReport(
  runtime: Awaited<ReturnType<typeof selectForCluster>>['runtime'],
  cluster: string,
  windowMs: number,
  signal?: AbortSignal,
): Promise<ReportDoc> {
  const status = await collectStatus(runtime, cluster);
  const live = status.nodes.filter((n) => n.runtimeState === 'running');
  const first = new Map(await Promise.all(live.map(async (n) => [n.name, await scrape(n.endpoint)] as const)));
  const t0 = performance.now();
  if (windowMs > 0) await sleep(windowMs, signal);
  const [second, counts] = await Promise.all([
    Promise.all(live.map(async (n) => [n.name, await scrape(n.endpoint)] as const)).then((x) => new Map(x)),
    Promise.all(live.filter((n) => n.role === 'postgres').map(async (n) => [n.name, await countNow(n.endpoint)] as const)).then((x) => new Map(x)),
  ]);
  const secs = (performance.now() - t0) / 1000;
  const nodes = status.nodes.map((n) => reportNode(n, first.get(n.name) ?? null, second.get(n.name) ?? null, secs, counts.get(n.name) ?? null));
  const problems = [...status.problems];
  for (const n of nodes) if (n.healthy && n.state !== 'killed' && second.has(n.name) && !second.get(n.name)) problems.push(`${n.name}: /metrics did not answer`);
  return {
    schema: 'dvote.report/v1',
    cluster,
    runtime: runtime.kind,
    healthy: status.healthy && problems.length === status.problems.length,
    managerLeader: status.managerLeader,
    problems,
    windowMs,
    generatedAt: new Date().toISOString(),
    nodes,
  };
}

/** A PostgreSQL copy's votes counted as of now (its /health number is a periodic sample); null when it cannot say. */
export async function countNow(endpoint: string): Promise<number | null> {
  try {
    const res = await request(`${endpoint}/votes/count`, { headersTimeout: 5000, bodyTimeout: 5000 });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return null;
    }
    const b = (await res.body.json()) as { votes?: unknown };
    return typeof b.votes === 'number' ? b.votes : null;
  } catch {
    return null;
  }
}

function reportNode(n: StatusNode, a: MetricFamilies | null, b: MetricFamilies | null, secs: number, counted: number | null = null): ReportNode {
  const rate = (name: string, where: Record<string, RegExp | string> = {}) => {
    if (!a || !b) return null;
    const x = sumOf(a, name, where);
    const y = sumOf(b, name, where);
    if (x === null || y === null || secs <= 0) return null;
    return Math.round(((y - x) / secs) * 10) / 10;
  };
  const dvote: Record<string, number> = {};
  if (b) for (const name of b.keys()) if (name.startsWith('dvote_') && !name.endsWith('_bucket')) dvote[name] = sumOf(b, name) ?? 0;
  const g = (name: string) => (b ? sumOf(b, name) : null);
  const health = n.health ?? {};
  return {
    name: n.name,
    role: n.role,
    healthy: n.healthy,
    state: n.state,
    endpoint: n.endpoint,
    ...(n.problem ? { problem: n.problem } : {}),
    metrics: {
      raftTerm: n.term ?? (b ? maxOf(b, 'dvote_raft_term') : null),
      commitIndex: n.commitIndex ?? g('dvote_raft_commit_index'),
      appliedIndex: n.appliedIndex ?? g('dvote_raft_applied_index'),
      isLeader: b && b.has('dvote_raft_is_leader') ? (g('dvote_raft_is_leader') ?? 0) > 0 : n.role === 'manager' ? n.state === 'leader' : null,
      leaderChanges: g('dvote_raft_leader_changes'),
      replicationLag: n.lag ?? (typeof health.lag === 'number' ? health.lag : g('dvote_replication_lag')),
      votesStored: counted ?? (typeof health.votes === 'number' ? health.votes : g('dvote_votes_stored')),
      requestRate: rate('dvote_http_requests_total'),
      errorRate: rate('dvote_http_requests_total', { status: /^5/ }),
      requestsTotal: g('dvote_http_requests_total'),
      errorsTotal: b ? sumOf(b, 'dvote_http_requests_total', { status: /^5/ }) ?? 0 : null,
      cpuSeconds: g('process_cpu_seconds_total'),
      residentMemoryBytes: g('process_resident_memory_bytes'),
      dvote,
    },
  };
}

export function renderReport(doc: ReportDoc): string {
  const rows = doc.nodes.map((n) => [
    n.name,
    n.role,
    n.healthy ? 'yes' : 'no',
    n.state,
    n.metrics.raftTerm ?? '-',
    n.metrics.commitIndex ?? '-',
    n.metrics.replicationLag ?? '-',
    n.metrics.votesStored ?? '-',
    n.metrics.requestRate ?? '-',
    n.metrics.errorRate ?? '-',
    n.metrics.residentMemoryBytes !== null ? `${Math.round(n.metrics.residentMemoryBytes / 1e6)} MB` : '-',
  ]);
  const t = renderTable(['node', 'role', 'healthy', 'state', 'term', 'commit', 'lag', 'votes', 'req/s', '5xx/s', 'memory'], rows);
  return `${t}\n${doc.healthy ? 'healthy' : `unhealthy:\n  ${doc.problems.join('\n  ')}`} (rates over ${doc.windowMs} ms)`;
}
