import type { Command } from 'commander';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import { sleep } from '../../runtime/wait.js';
import { collectStatus, type StatusDoc } from '../cluster-status.js';
import type { CommandContext } from '../main.js';
import type { Output } from '../output/output.js';
import { renderTable } from '../output/table.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerStatus(program: Command, run: Run): void {
  program
    .command('status')
    .description('one row per node (role, state, leader/term, commit index, lag, endpoint), per log partition and per voting shard; exits 1 when unhealthy')
    .option('--watch', 'refresh every second until Ctrl-C')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote status
  $ dvote status --json | jq -r '.nodes[] | select(.state=="leader") | .name'
  $ dvote status --watch`,
    )
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { watch?: boolean; runtime?: RuntimePreference };
        const cluster = ctx.globals.cluster ?? 'dvote';
        const { runtime } = await selectForCluster(cluster, o.runtime ?? 'auto');
        for (;;) {
          const doc = await collectStatus(runtime, cluster);
          if (ctx.out.json) ctx.out.document(doc);
          else {
            if (o.watch && ctx.out.interactive) process.stdout.write('\x1b[2J\x1b[H');
            ctx.out.print(renderStatus(doc, ctx.out));
          }
          if (!o.watch) {
            if (!doc.healthy) ctx.setExitCode(1);
            return;
          }
          await sleep(1000, ctx.signal);
          if (ctx.signal.aborted) return;
        }
      }, cmd),
    );
}

export function renderStatus(doc: StatusDoc, out: Output): string {
  const c = out.c;
  const rows = doc.nodes.map((n) => [
    n.name,
    n.role,
    n.state === 'leader' ? c.green(n.state) : n.healthy ? n.state : c.red(n.state),
    n.healthy ? c.green('yes') : c.red('no'),
    n.leader ?? '-',
    n.term ?? '-',
    n.commitIndex ?? '-',
    n.lag ?? '-',
    n.endpoint,
  ]);
  const head = ['node', 'role', 'state', 'healthy', 'leader', 'term', 'commit', 'lag', 'endpoint'];
  const verdict = doc.healthy
    ? c.green(`cluster "${doc.cluster}" healthy`)
    : c.red(`cluster "${doc.cluster}" unhealthy`) + (doc.problems.length ? `\n  ${doc.problems.join('\n  ')}` : '');
  let partitionTable = '';
  if (doc.partitions.length > 0) {
    const prow = doc.partitions.map((p) => [
      `${p.topic}/${p.partition}`,
      p.leader ?? c.red('none'),
      [...p.replicas, ...p.learners.map((l) => `+${l}`)].join(','),
      p.term ?? '-',
      p.commitIndex ?? '-',
      p.highWatermark ?? '-',
      p.lag ?? '-',
    ]);
    partitionTable = `\n${renderTable(['partition', 'leader', 'replicas (+learner)', 'term', 'commit', 'messages', 'lag'], prow)}`;
  }
  let shardTable = '';
  if (doc.shards.length > 0) {
    const srow = doc.shards.map((sh) => [
      String(sh.shard),
      sh.epoch,
      sh.mode,
      sh.serviceState === 'serving' ? c.green(sh.serviceState) : c.red(sh.serviceState ?? 'no answer'),
      sh.copies
        .map((cp) => {
          const tag = cp.role === 'primary' ? '*' : cp.role === 'fenced' ? '!' : '';
          const what = cp.state === null ? 'down' : cp.state === cp.role ? '' : ` ${cp.state}`;
          const text = `${tag}${cp.node}${what} ${cp.votes ?? '-'}v lag ${cp.lag ?? '-'}`;
          return cp.healthy ? text : c.red(text);
        })
        .join('\n'),
      sh.atRisk ?? '-',
      sh.atRiskAtFailovers,
      sh.lostVotes,
    ]);
    shardTable = `\n${renderTable(['shard', 'epoch', 'mode', 'service', 'copies (*primary, !fenced): votes, lag', 'at risk', 'at risk at failovers', 'lost (counted)'], srow)}`;
  }
  return `${renderTable(head, rows)}${partitionTable}${shardTable}\n${verdict} (${doc.runtime} runtime, ${doc.nodes.length} nodes${doc.managerLeader ? `, manager leader ${doc.managerLeader}` : ''})`;
}
