import { Writable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { FAULT_KINDS, type FaultKind } from '../../bench/chaos.js';
import { renderBenchHtml } from '../../bench/html-report.js';
import { parseMatrixSpec, runMatrixWith, type MatrixDoc } from '../../bench/matrix.js';
import { runVoteBench, type BenchDoc } from '../../bench/vote-bench.js';
import { runQueueLoad } from '../../bench/queue-load.js';
import { DvoteError } from '../../core/errors.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import { parseDuration } from '../../runtime/wait.js';
import type { CommandContext } from '../main.js';
import type { Output } from '../output/output.js';
import { Output as OutputClass } from '../output/output.js';
import { renderTable } from '../output/table.js';
import { up } from './up.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerBench(program: Command, run: Run): void {
  program
    .command('bench')
    .description('load the cluster with votes, verify every copy afterwards, and report throughput and latency')
    .option('--votes <n>', 'number of votes (queue workload: messages) to send (default 20000 unless --duration)')
    .option('--duration <d>', 'send for this long instead of a count (e.g. 30s)')
    .option('--warmup <d>', 'send the same load this long first and leave it out of throughput and latency (its votes are verified too), e.g. 3s')
    .option('--concurrency <c>', 'closed loop: requests in flight (default 64)')
    .option('--rate <r>', 'open loop: requests per second; latency counts from the intended send time')
    .option('--voters <n>', 'size of the voter id space (default: the number of votes, or 1,000,000 with --duration; plus 1,000,000 with --warmup)')
    .option('--duplicates <p>', 'share of requests from voters who already voted', '0.01')
    .option('--batch <k>', 'votes per request (POST /votes/batch); 1 = one request per vote, as real voters do', '1')
    .option(
      '--chaos [faults]',
      'inject faults during the load and still verify zero loss; optionally only these, once each, in order (comma-separated: kill-manager-leader, kill-partition-leader, kill-shard-primary, pause-node, partition-node)',
    )
    .option('--no-verify', 'skip reading every copy afterwards')
    .option('--settle <d>', 'how long replicas may take to catch up before verification', '60s')
    .option('--matrix [spec]', 'run the original DisVote Table 1 and its extensions (e.g. replicas=0..3,replication=async,log,sync)')
    .addOption(new Option('--workload <kind>', 'what to load').choices(['vote', 'queue']).default('vote'))
    .option('--seed <n>', 'workload seed (same seed, same voters and choices)', '1')
    .option('--published-ports', 'talk to services through their published ports instead of their direct addresses')
    .option('--out <file>', 'also write the JSON document to this file')
    .option('--html <file>', 'write a self-contained HTML report with plots')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Exit codes: 0 the run is clean; 1 an acknowledged vote was lost (log/sync
mode), counted twice, or copies diverge; 2 bad flags; 3 runtime unavailable.

Examples:
  $ dvote bench --votes 20000 --concurrency 64
  $ dvote bench --duration 30s --rate 8000              # open loop
  $ dvote bench --warmup 3s --duration 15s --rate 1000  # steady state: 3 s left out
  $ dvote bench --votes 200000 --batch 100
  $ dvote bench --duration 30s --chaos --html report.html
  $ dvote bench --votes 5000 --chaos kill-shard-primary   # one chosen fault
  $ dvote bench --matrix                                  # DisVote Table 1, and more
  $ dvote bench --json | jq '{v: .throughput.votesPerSec, p99: .latencyMs.p99, ok: .verify.ok}'`,
    )
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as Record<string, string | boolean | undefined>;
        const num = (name: string, v: unknown, min: number, integer = true): number | undefined => {
          if (v === undefined) return undefined;
          const n = Number(v);
          if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
            throw new DvoteError('USAGE', `--${name} must be ${integer ? 'a whole number' : 'a number'} >= ${min}, not "${String(v)}"`, `for example --${name} ${Math.max(min, 1)}`);
          }
          return n;
        };
        const dur = (name: string, v: unknown): number | undefined => {
          if (v === undefined) return undefined;
          const d = parseDuration(String(v));
          if (d === null || d <= 0) throw new DvoteError('USAGE', `--${name} "${String(v)}" is not a duration`, 'use e.g. 30s or 2m');
          return d;
        };
        const duplicates = num('duplicates', o.duplicates, 0, false)!;
        if (duplicates >= 1) throw new DvoteError('USAGE', '--duplicates is a share below 1, e.g. 0.01', 'use a value in [0, 1)');
        if (o.concurrency !== undefined && o.rate !== undefined) {
          throw new DvoteError('USAGE', '--concurrency (closed loop) and --rate (open loop) exclude each other', 'pick one');
        }
        const durationMs = dur('duration', o.duration);
        const warmupMs = dur('warmup', o.warmup);
        if (warmupMs !== undefined && (o.workload === 'queue' || o.matrix !== undefined)) {
          throw new DvoteError('USAGE', `--warmup applies to the vote load only, not to ${o.matrix !== undefined ? '--matrix' : '--workload queue'}`, 'drop --warmup');
        }
        let votes = num('votes', o.votes, 1);
        if (votes === undefined && durationMs === undefined) votes = 20_000;
        const batch = num('batch', o.batch, 1)!;
        if (batch > 1000) throw new DvoteError('USAGE', '--batch may be at most 1000 (the shard service limit)', 'use --batch 100');
        const cluster = ctx.globals.cluster ?? 'dvote';
        const { runtime } = await selectForCluster(cluster, (o.runtime as RuntimePreference | undefined) ?? 'auto');

        if (o.workload === 'queue') {
          // Produce/consume load on the brokers: same flags, same report shape.
          const nodes = await runtime.listNodes(cluster);
          const managers = nodes.filter((n) => n.role === 'manager' && n.state === 'running').map((n) => n.endpoint.replace(/^http:\/\//, ''));
          const brokerEndpoints = Object.fromEntries(
            nodes.filter((n) => n.role === 'broker').map((n) => [n.name, (o.publishedPorts ? n.endpoint : n.directEndpoint).replace(/^http:\/\//, '')]),
          );
          if (Object.keys(brokerEndpoints).length === 0) throw new DvoteError('USAGE', `cluster "${cluster}" has no brokers`, 'bring some up with `dvote scale --brokers 3`');
          if (o.rate !== undefined) throw new DvoteError('USAGE', '--rate is not supported by the queue workload', 'use --concurrency (producers)');
          const doc = await ctx.out.step('queue benchmark', () =>
            runQueueLoad({
              managers,
              brokerEndpoints,
              ...(votes !== undefined ? { messages: votes } : {}),
              ...(durationMs !== undefined ? { durationMs } : {}),
              producers: num('concurrency', o.concurrency, 1) ?? 1,
              batch,
              consume: 'after',
            }),
          );
          if (typeof o.out === 'string') writeFileSync(o.out, `${JSON.stringify(doc, null, 2)}\n`);
          if (ctx.out.json) ctx.out.document(doc);
          else {
            const l = doc.latencyMs;
            ctx.out.print(
              `queue: ${doc.messages.acknowledged} acknowledged, ${doc.messages.consumed} consumed, ${doc.messages.failed} failed\n` +
                `throughput: produce ${doc.throughput.producePerSec} msg/s, consume ${doc.throughput.consumePerSec} msg/s\n` +
                `produce latency ms: p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}\n` +
                `${doc.verify.ok ? 'verified' : 'VERIFICATION FAILED'}: lost ${doc.verify.lost}, duplicated ${doc.verify.duplicated}, out of order ${doc.verify.outOfOrder}`,
            );
          }
          if (!doc.verify.ok) ctx.setExitCode(1);
          return;
        }

        if (o.matrix !== undefined) {
          let spec;
          try {
            spec = parseMatrixSpec(typeof o.matrix === 'string' ? o.matrix : undefined);
          } catch (e) {
            throw new DvoteError('USAGE', (e as Error).message, 'e.g. --matrix replicas=0..3,replication=async,log,sync');
          }
          // Each column runs on its own fresh cluster beside the user's: the
          // original's layout (two shards by parity) on the same runtime.
          // Their `up` prints nothing on stdout: it carries only this command's result.
          const sink = new Writable({ write: (_c, _e, done) => done() });
          const quiet: CommandContext = { ...ctx, out: new OutputClass({ json: false, quiet: true, stdout: sink }), setExitCode: () => undefined };
          const doc = await runMatrixWith(
            {
              runtime,
              out: ctx.out,
              signal: ctx.signal,
              concurrency: num('concurrency', o.concurrency, 1) ?? 64,
              up: async ({ replication, replicas }) => {
                const name = `${cluster}-mx`;
                await runtime.removeCluster(name, { volumes: true });
                await up(quiet, { cluster: name, managers: 3, brokers: replication === 'sync' ? 3 : 3, shards: 2, replicas, replication, runtime: runtime.kind, timeoutMs: 180_000, extra: { shardMap: 'parity' } });
                return name;
              },
              down: async (name) => {
                await runtime.removeCluster(name, { volumes: true });
              },
            },
            spec,
          );
          finish(ctx, doc, o, () => renderMatrix(doc));
          if (!doc.ok) ctx.setExitCode(1);
          return;
        }

        const doc = await ctx.out.step('benchmark', (update) =>
          runVoteBench(
            { runtime, cluster, signal: ctx.signal, progress: update },
            {
              ...(votes !== undefined ? { votes } : {}),
              ...(durationMs !== undefined ? { durationMs } : {}),
              ...(warmupMs !== undefined ? { warmupMs } : {}),
              ...(o.concurrency !== undefined ? { concurrency: num('concurrency', o.concurrency, 1)! } : {}),
              ...(o.rate !== undefined ? { rate: num('rate', o.rate, 1, false)! } : {}),
              ...(o.voters !== undefined ? { voters: num('voters', o.voters, 1)! } : {}),
              duplicates,
              batch,
              chaos: Boolean(o.chaos),
              ...(typeof o.chaos === 'string' ? { faults: parseFaults(o.chaos) } : {}),
              verify: o.verify !== false,
              settleTimeoutMs: dur('settle', o.settle) ?? 60_000,
              seed: num('seed', o.seed, 0)!,
              direct: !o.publishedPorts,
            },
          ),
        );
        finish(ctx, doc, o, () => renderBench(doc, ctx.out));
        const strict = doc.config.replication !== 'async';
        if (!doc.verify.ok && (strict || doc.verify.duplicated > 0 || doc.verify.divergent > 0)) ctx.setExitCode(1);
      }, cmd),
    );
}

function parseFaults(text: string): FaultKind[] {
  const kinds = text.split(',').map((k) => k.trim()).filter(Boolean);
  const bad = kinds.filter((k) => !(FAULT_KINDS as string[]).includes(k));
  if (bad.length > 0) throw new DvoteError('USAGE', `unknown fault ${bad.map((b) => `"${b}"`).join(', ')}`, `pick from: ${FAULT_KINDS.join(', ')}`);
  return kinds as FaultKind[];
}

function finish(ctx: CommandContext, doc: BenchDoc | MatrixDoc, o: Record<string, unknown>, render: () => string): void {
  if (typeof o.out === 'string') writeFileSync(o.out, `${JSON.stringify(doc, null, 2)}\n`);
  if (typeof o.html === 'string') {
    writeFileSync(o.html, renderBenchHtml(doc));
    ctx.out.info(`HTML report: ${o.html}`);
  }
  if (ctx.out.json) ctx.out.document(doc);
  else ctx.out.print(render());
}

/** The generator's own share, so that a reader can tell its delays from the cluster's. */
export function generatorLine(g: BenchDoc['generator']): string {
  const parts = [`${g.cpuCores} cores`, `event-loop delay p99 ${g.eventLoopDelayMs.p99} ms (max ${g.eventLoopDelayMs.max})`];
  if (g.sendLagMs) parts.push(`requests sent late by p99 ${g.sendLagMs.p99} ms (max ${g.sendLagMs.max})`);
  return `load generator (inside the latencies above): ${parts.join(', ')}`;
}

export function renderBench(d: BenchDoc, out: Output): string {
  const c = out.c;
  const l = d.latencyMs;
  const v = d.verify;
  const lines = [
    `${d.config.replication} replication, ${d.config.shards} shard(s) x (primary + ${d.config.replicas} replicas), ${d.config.brokers} broker(s), ${d.runtime} runtime`,
    `load: ${d.config.mode.kind === 'closed' ? `closed loop, ${d.config.mode.concurrency} in flight` : `open loop, ${d.config.mode.rate} req/s`}, ${d.config.batch} vote(s) per request, ${(d.config.duplicates * 100).toFixed(1)}% repeat voters${d.config.chaos ? ', with faults' : ''}`,
    `votes: ${d.votes.sent} sent, ${c.green(String(d.votes.acknowledged))} acknowledged, ${d.votes.rejected} already voted, ${d.votes.failed ? c.red(String(d.votes.failed)) : 0} failed (${d.votes.unknownOutcome} with unknown outcome)`,
    ...(d.warmup ? [`warm-up: ${(d.warmup.elapsedMs / 1000).toFixed(1)} s, ${d.warmup.votes} votes (verified below, not in the figures that follow)`] : []),
    `throughput: ${c.bold(String(d.throughput.votesPerSec))} votes/s (${d.throughput.requestsPerSec} requests/s over ${(d.throughput.elapsedMs / 1000).toFixed(1)} s)`,
    `latency ms: p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}`,
    generatorLine(d.generator),
  ];
  if (Object.keys(d.errorsByKind).length > 0) {
    lines.push(`errors: ${Object.entries(d.errorsByKind).map(([k, n]) => `${n}x ${k}`).join('; ')}`);
  }
  if (d.faults.length > 0) {
    lines.push(
      renderTable(
        ['fault', 'target', 'at s', 'restored s', 'first vote after ms'],
        d.faults.map((f) => [f.kind, f.target, (f.at / 1000).toFixed(1), f.restoredAt !== undefined ? (f.restoredAt / 1000).toFixed(1) : '-', f.recoveryMs ?? (f.error ? `failed: ${f.error}` : '-')]),
      ),
    );
  }
  if (d.atRisk !== null && d.config.replication === 'async') lines.push(`async mode: ${d.atRisk} vote(s) committed on a primary were not yet in the vote log at the end (at risk if that disk were lost)`);
  if ('skipped' in v && v.skipped) lines.push(c.yellow('verification skipped (--no-verify)'));
  else {
    const vr = v as Exclude<BenchDoc['verify'], { skipped: true }>;
    const verdict = vr.ok ? c.green('verified: every acknowledged vote is on every copy exactly once, tallies agree') : c.red('VERIFICATION FAILED');
    lines.push(
      `${verdict}\n  lost ${vr.lost} (on primary ${vr.lostOnPrimary}), duplicated ${vr.duplicated}, divergent ${vr.divergent}, unacknowledged but stored ${vr.unacknowledgedStored}, unexpected ${vr.unexpected}; settled in ${(vr.settledMs / 1000).toFixed(1)} s`,
    );
    for (const p of vr.problems) lines.push(`  ${p}`);
  }
  return lines.join('\n');
}

export function renderMatrix(m: MatrixDoc): string {
  const rows = m.rows.map((r) => [
    r.label,
    r.replication,
    r.replicas,
    r.loop,
    r.originalSeconds ?? '-',
    r.seconds.toFixed(2),
    r.votesPerSec,
    r.p99,
    r.verifyOk ? 'ok' : 'FAILED',
  ]);
  return `${renderTable(['votes', 'replication', 'replicas', 'load', 'original s', 'dvote s', 'votes/s', 'p99 ms', 'verify'], rows)}\n${m.note}`;
}
