import type { Command } from 'commander';
import { DvoteError } from '../../core/errors.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import type { CommandContext } from '../main.js';
import { intFlag } from '../topology-input.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerLogs(program: Command, run: Run): void {
  program
    .command('logs')
    .description("print a node's output (JSON lines from the node program)")
    .argument('<node>', 'node name, e.g. manager-1 (see dvote status)')
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
    .option('-n, --tail <lines>', 'only the last n lines')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText('after', '\nExamples:\n  $ dvote logs manager-1 -n 50\n  $ dvote logs broker-2 -f')
    .action(async (node: string, _o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { follow?: boolean; tail?: string; runtime?: RuntimePreference };
        const cluster = ctx.globals.cluster ?? 'dvote';
        const { runtime } = await selectForCluster(cluster, o.runtime ?? 'auto');
        const nodes = await runtime.listNodes(cluster);
        if (!nodes.some((n) => n.name === node)) {
          throw new DvoteError('NOT_FOUND', `no node "${node}" in cluster "${cluster}"`, `pick one of: ${nodes.map((n) => n.name).join(', ') || '(none)'}`);
        }
        const tail = intFlag('tail', o.tail);
        for await (const line of runtime.logs(cluster, node, { ...(o.follow ? { follow: true } : {}), ...(tail !== undefined ? { tail } : {}), signal: ctx.signal })) {
          process.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
        }
      }, cmd),
    );
}
