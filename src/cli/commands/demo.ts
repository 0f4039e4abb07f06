import type { Command } from 'commander';
import { runVoteBench } from '../../bench/vote-bench.js';
import { DvoteError } from '../../core/errors.js';
import { selectForCluster } from '../../runtime/select.js';
import { parseDuration } from '../../runtime/wait.js';
import type { CommandContext } from '../main.js';
import { renderBench } from './bench.js';
import { buildReport, renderReport } from './report.js';
import { up } from './up.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerDemo(program: Command, run: Run): void {
  program
    .command('demo')
    .description('the whole story in one command: up the default cluster, load it with votes, verify every copy, report, down')
    .option('--votes <n>', 'votes to send', '20000')
    .option('--chaos', 'inject faults while voting (kill leaders and a primary)')
    .option('--keep', 'leave the cluster running afterwards')
    .option('--runtime <kind>', 'docker or process (default: docker when a daemon answers)')
    .option('--timeout <duration>', 'how long each readiness wait may take', '180s')
    .addHelpText('after', '\nExamples:\n  $ dvote demo\n  $ dvote demo --chaos --keep\n  $ dvote demo --runtime process --votes 5000')
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { votes: string; chaos?: boolean; keep?: boolean; runtime?: string; timeout: string };
        const votes = Number(o.votes);
        if (!Number.isInteger(votes) || votes < 1) throw new DvoteError('USAGE', `--votes must be a whole number >= 1, not "${o.votes}"`, 'e.g. --votes 20000');
        const timeoutMs = parseDuration(o.timeout);
        if (timeoutMs === null) throw new DvoteError('USAGE', `--timeout "${o.timeout}" is not a duration`, 'e.g. 180s');
        const cluster = ctx.globals.cluster ?? 'demo';
        const out = ctx.out;
        out.info(out.c.bold(`1/4 bringing up cluster "${cluster}" (3 managers, 3 brokers, 2 shards of primary + 2 replicas, log replication)`));
        await up({ ...ctx, globals: { ...ctx.globals, cluster } }, { cluster, timeoutMs, ...(o.runtime ? { runtime: o.runtime } : {}) });
        const { runtime } = await selectForCluster(cluster, (o.runtime as 'docker' | 'process' | undefined) ?? 'auto');
        let failed = false;
        try {
          out.info(out.c.bold(`2/4 ${votes} votes, 64 in flight, 1% repeat voters${o.chaos ? ', with faults' : ''}; then every copy is verified`));
          const bench = await out.step('voting', (update) =>
            runVoteBench(
              { runtime, cluster, signal: ctx.signal, progress: update },
              { votes, concurrency: 64, duplicates: 0.01, batch: 1, chaos: Boolean(o.chaos), verify: true, settleTimeoutMs: 60_000, seed: Date.now() % 100000, direct: true },
            ),
          );
          out.print(renderBench(bench, out));
          if (!bench.verify.ok) failed = true;
          out.info(out.c.bold('3/4 health and throughput from every node'));
          const report = await buildReport(runtime, cluster, 1000, ctx.signal);
          out.print(renderReport(report));
          if (!report.healthy) failed = true;
          ctx.out.document({ schema: 'dvote.demo/v1', cluster, runtime: runtime.kind, bench, report });
        } finally {
          if (o.keep) out.info(`4/4 cluster "${cluster}" left running (dvote --cluster ${cluster} down --volumes removes it)`);
          else {
            out.info(out.c.bold(`4/4 removing cluster "${cluster}"`));
            await runtime.removeCluster(cluster, { volumes: true });
          }
        }
        if (failed) ctx.setExitCode(1);
      }, cmd),
    );
}
