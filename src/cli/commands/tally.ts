// `dvote tally [--json] [--verify]`: votes per choice, per shard (from each
// shard's primary through its service) and in total; then every PostgreSQL
// copy counted directly (pg at the runtime's pgAddress) and compared with its
// shard's primary, so a copy that lags or diverges shows.
// Exit codes: 0 every shard answered; 1 a shard did not answer (or, with
// --verify, a copy disagrees with its primary).
import type { Command } from 'commander';
import pg from 'pg';
import { request } from 'undici';
import { VoteClient, VoteClientError, type TallyResult } from '../../client/vote-client.js';
import { DvoteError, ExitCode } from '../../core/errors.js';
import { roleIn } from '../../core/shard-records.js';
import { choiceName } from '../../core/vote-validation.js';
import type { RuntimePreference } from '../../runtime/select.js';
import type { ObservedNode } from '../../runtime/runtime.js';
import { pgConnection } from '../../services/postgres/pg-schema.js';
import { tallyOf } from '../../services/shard/vote-store.js';
import type { CommandContext } from '../main.js';
import type { Output } from '../output/output.js';
import { renderTable } from '../output/table.js';
import { clusterAccess } from './vote.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export interface CopyTally {
  node: string;
  /** primary | replica | fenced | unassigned, per the shard record. */
  role: string;
  counts?: Record<string, number>;
  total?: number;
  /** Same counts as the shard's primary. */
  agrees?: boolean;
  error?: string;
}

export interface ShardTallyDoc {
  shard: number;
  epoch: number | null;
  primary: string | null;
  counts: Record<string, number> | null;
  total: number | null;
  error?: string;
  /** What the shard service says about replication (mode, whether replicas are fed). */
  replication?: Record<string, unknown>;
  copies: CopyTally[];
  /** Every copy counted the same as the primary. */
  consistent: boolean;
}

export interface TallyDoc {
  schema: 'dvote.tally/v1';
  cluster: string;
  ballot: string[];
  counts: Record<string, number>;
  total: number;
  /** Every shard's primary answered. */
  complete: boolean;
  /** Every copy of every shard agrees with its primary. */
  consistent: boolean;
  shards: ShardTallyDoc[];
}

export function registerTally(program: Command, run: Run): void {
  program
    .command('tally')
    .description('votes per choice, per shard and in total; every PostgreSQL copy counted and compared with its primary')
    .option('--verify', 'exit 1 unless every copy agrees with its primary')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote tally
  $ dvote tally --json | jq .counts
  $ dvote tally --verify     # after a run: do all copies hold the same votes?`,
    )
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { verify?: boolean; runtime?: RuntimePreference };
        const doc = await tally(ctx, { ...(o.runtime ? { runtime: o.runtime } : {}) });
        if (ctx.out.json) ctx.out.document(doc);
        else ctx.out.print(renderTally(doc, ctx.out));
        if (!doc.complete || (o.verify && !doc.consistent)) ctx.setExitCode(ExitCode.Unhealthy);
      }, cmd),
    );
}

export async function tally(ctx: CommandContext, opts: { runtime?: RuntimePreference } = {}): Promise<TallyDoc> {
  const cluster = ctx.globals.cluster ?? 'dvote';
  const access = await clusterAccess(cluster, opts.runtime);
  const client = new VoteClient({ managers: access.managers, endpointOf: access.endpointOf, connections: 2 });
  let t: TallyResult;
  let snapRecords: Awaited<ReturnType<VoteClient['connect']>>['shards'];
  try {
    try {
      t = await client.tally();
      snapRecords = client.directory.current()?.shards ?? [];
    } catch (e) {
      if (e instanceof VoteClientError) throw new DvoteError('UNHEALTHY', e.message, 'check the cluster with `dvote status`');
      throw e;
    }
  } finally {
    await client.close();
  }
  const ballot = t.ballot;
  const shards: ShardTallyDoc[] = await Promise.all(
    t.shards.map(async (s): Promise<ShardTallyDoc> => {
      const rec = snapRecords.find((r) => r.shard === s.shard) ?? null;
      const pgNodes = access.nodes
        .filter((n) => n.role === 'postgres' && n.labels['io.dvote.shard'] === String(s.shard))
        .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
      const copies = await Promise.all(pgNodes.map((n) => countCopy(n, rec ? roleIn(rec, n.name) : 'unassigned', ballot)));
      for (const c of copies) if (c.counts && s.counts) c.agrees = sameCounts(c.counts, s.counts);
      const svc = rec ? access.nodes.find((n) => n.name === rec.service) : undefined;
      const replication = svc ? await serviceReplication(svc) : undefined;
      return {
        shard: s.shard,
        epoch: s.epoch ?? rec?.epoch ?? null,
        primary: s.primary ?? rec?.primary ?? null,
        counts: s.counts ?? null,
        total: s.total ?? null,
        ...(s.error ? { error: s.error } : {}),
        ...(replication ? { replication } : {}),
        copies,
        consistent: s.counts !== undefined && copies.every((c) => c.agrees === true),
      };
    }),
  );
  return {
    schema: 'dvote.tally/v1',
    cluster,
    ballot,
    counts: t.counts,
    total: t.total,
    complete: t.complete,
    consistent: shards.every((s) => s.consistent),
    shards,
  };
}

async function countCopy(n: ObservedNode, role: string, ballot: string[]): Promise<CopyTally> {
  if (n.state !== 'running' || !n.pgAddress) return { node: n.name, role, error: `node is ${n.state}` };
  const client = new pg.Client({ ...pgConnection(n.pgAddress, 'dvote-tally'), connectionTimeoutMillis: 3_000, query_timeout: 30_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const t = await tallyOf(client);
    const counts: Record<string, number> = Object.fromEntries(ballot.map((b) => [b, 0]));
    for (const [c, k] of t.counts) counts[choiceName(c, ballot)] = k;
    return { node: n.name, role, counts, total: t.total };
  } catch (e) {
    return { node: n.name, role, error: `cannot count at ${n.pgAddress}: ${(e as Error).message}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function serviceReplication(svc: ObservedNode): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await request(`${svc.endpoint}/health`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
    const body = (await res.body.json()) as { replication?: Record<string, unknown> };
    return body.replication;
  } catch {
    return undefined;
  }
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] ?? 0) !== (b[k] ?? 0)) return false;
  return true;
}

export function renderTally(doc: TallyDoc, out: Output): string {
  const c = out.c;
  const head = ['shard', 'copy', 'role', ...doc.ballot, 'total', 'agrees'];
  const rows: (string | number)[][] = [];
  for (const s of doc.shards) {
    rows.push([String(s.shard), c.bold('primary (service)'), s.primary ?? '-', ...doc.ballot.map((b) => s.counts?.[b] ?? '-'), s.total ?? '-', s.error ? c.red(s.error) : '']);
    for (const cp of s.copies) {
      rows.push([
        '',
        cp.node,
        cp.role,
        ...doc.ballot.map((b) => cp.counts?.[b] ?? '-'),
        cp.total ?? '-',
        cp.error ? c.red(cp.error) : cp.agrees ? c.green('yes') : c.yellow('no'),
      ]);
    }
  }
  rows.push([c.bold('all'), '', '', ...doc.ballot.map((b) => c.bold(String(doc.counts[b] ?? 0))), c.bold(String(doc.total)), '']);
  const lines = [renderTable(head, rows)];
  if (!doc.complete) lines.push(c.red('incomplete: a shard did not answer; the total is short'));
  for (const s of doc.shards) {
    if (s.consistent) continue;
    const note = typeof s.replication?.note === 'string' ? ` (${s.replication.note})` : '';
    lines.push(c.yellow(`shard ${s.shard}: not every copy agrees with the primary yet${note}`));
  }
  if (doc.complete && doc.consistent) lines.push(c.green(`${doc.total} votes; every copy agrees with its primary`));
  return lines.join('\n');
}
