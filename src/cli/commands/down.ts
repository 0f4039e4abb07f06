import type { Command } from 'commander';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import type { RemoveClusterResult } from '../../runtime/runtime.js';
import { DvoteError } from '../../core/errors.js';
import type { CommandContext } from '../main.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export interface DownDoc {
  schema: 'dvote.down/v1';
  cluster: string;
  runtime: string;
  removed: RemoveClusterResult;
}

export function registerDown(program: Command, run: Run): void {
  program
    .command('down')
    .description('remove every node, network (and with --volumes, volume/data) of the cluster')
    .option('--volumes', 'also delete the data (votes, logs) so the next up starts empty')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText('after', '\nExamples:\n  $ dvote down\n  $ dvote down --volumes --cluster ci')
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { volumes?: boolean; runtime?: RuntimePreference };
        const cluster = ctx.globals.cluster ?? 'dvote';
        let runtime;
        try {
          runtime = (await selectForCluster(cluster, o.runtime ?? 'auto')).runtime;
        } catch (e) {
          if (e instanceof DvoteError && e.code === 'NOT_FOUND') {
            ctx.out.info(`no cluster "${cluster}" is running; nothing to remove`);
            ctx.out.document({ schema: 'dvote.down/v1', cluster, runtime: null, removed: { nodes: [], networks: [], volumes: [] } });
            return;
          }
          throw e;
        }
        const removed = await ctx.out.step(`removing cluster "${cluster}"`, () => runtime.removeCluster(cluster, { volumes: Boolean(o.volumes) }));
        const doc: DownDoc = { schema: 'dvote.down/v1', cluster, runtime: runtime.kind, removed };
        ctx.out.document(doc);
        ctx.out.print(
          `removed ${removed.nodes.length} node(s), ${removed.networks.length} network(s), ${removed.volumes.length} volume(s)${o.volumes ? '' : ' (data kept; --volumes deletes it)'}`,
        );
      }, cmd),
    );
}
