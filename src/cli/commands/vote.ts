// `dvote vote <voter-id> <choice>`: cast one vote through the vote client
// (shard map -> the voter's shard service).
// Exit codes: 0 the vote was stored; 1 the voter had already voted (the first
// vote stands and is shown) or the cluster could not take the vote; 2 bad
// input (voter id or choice), nothing sent or stored.
import type { Command } from 'commander';
import { VoteClient, VoteClientError, type VoteResult } from '../../client/vote-client.js';
import { DvoteError, ExitCode } from '../../core/errors.js';
import { voterIdTextProblem } from '../../core/vote-validation.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import type { ObservedNode } from '../../runtime/runtime.js';
import type { CommandContext } from '../main.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export interface VoteDoc {
  schema: 'dvote.vote/v1';
  cluster: string;
  voterId: number | string;
  /** accepted | already-voted | invalid | failed */
  status: VoteResult['status'];
  choice?: string;
  choiceIndex?: number;
  shard?: number;
  epoch?: number;
  castAt?: string;
  error?: string;
  attempts: number;
}

export function registerVote(program: Command, run: Run): void {
  program
    .command('vote')
    .description('cast one vote; exits 0 when stored, 1 when the voter already voted (the first vote stands), 2 on bad input')
    .argument('<voter-id>', 'the voter id, a whole number in the topology range (default 1..9999999999)')
    .argument('<choice>', 'a ballot name (case-insensitive, quote names with spaces) or its position 1..N')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote vote 42 Democrats
  $ dvote vote 43 "protest vote"
  $ dvote vote 44 2 --json`,
    )
    .action(async (voterId: string, choice: string, _o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { runtime?: RuntimePreference };
        await vote(ctx, { voterId, choice, ...(o.runtime ? { runtime: o.runtime } : {}) });
      }, cmd),
    );
}

/** Manager endpoints and a node-name -> host-reachable URL map, from the runtime. */
export async function clusterAccess(cluster: string, pref: RuntimePreference = 'auto'): Promise<{ managers: string[]; nodes: ObservedNode[]; endpointOf: (node: string, advertised: string) => string }> {
  const { runtime } = await selectForCluster(cluster, pref);
  const nodes = await runtime.listNodes(cluster);
  const managers = nodes.filter((n) => n.role === 'manager' && n.state === 'running').map((n) => n.endpoint);
  if (managers.length === 0) {
    throw new DvoteError('UNHEALTHY', `no running manager in cluster "${cluster}"`, 'start the cluster with `dvote up` (see `dvote status`)');
  }
  const byName = new Map(nodes.map((n) => [n.name, n]));
  return { managers, nodes, endpointOf: (node, advertised) => byName.get(node)?.endpoint ?? `http://${advertised}` };
}

export async function vote(ctx: CommandContext, opts: { voterId: string; choice: string; runtime?: RuntimePreference }): Promise<VoteDoc> {
  const cluster = ctx.globals.cluster ?? 'dvote';
  // Syntax first, so that garbage is refused even when the cluster is down.
  const form = voterIdTextProblem(opts.voterId);
  if (form) throw new DvoteError('INVALID_INPUT', form, 'give the voter id as digits, e.g. dvote vote 42 Democrats');
  const access = await clusterAccess(cluster, opts.runtime);
  const client = new VoteClient({ managers: access.managers, endpointOf: access.endpointOf, connections: 1 });
  let r: VoteResult;
  try {
    try {
      r = await client.vote(opts.voterId, opts.choice);
    } catch (e) {
      if (e instanceof VoteClientError) throw new DvoteError('UNHEALTHY', e.message, 'check the cluster with `dvote status`');
      throw e;
    }
  } finally {
    await client.close();
  }
  const doc: VoteDoc = {
    schema: 'dvote.vote/v1',
    cluster,
    voterId: r.voterId,
    status: r.status,
    ...(r.choice !== undefined ? { choice: r.choice } : {}),
    ...(r.choiceIndex !== undefined ? { choiceIndex: r.choiceIndex } : {}),
    ...(r.shard !== undefined ? { shard: r.shard } : {}),
    ...(r.epoch !== undefined ? { epoch: r.epoch } : {}),
    ...(r.castAt !== undefined ? { castAt: r.castAt } : {}),
    ...(r.error !== undefined && r.status !== 'already-voted' ? { error: r.error } : {}),
    attempts: r.attempts,
  };
  if (r.status === 'invalid') {
    if (ctx.out.json) ctx.out.document(doc);
    throw new DvoteError('INVALID_INPUT', (r.error ?? 'invalid vote').replace(/; nothing was stored$/, ''), 'nothing was stored; see `dvote vote --help`');
  }
  if (r.status === 'failed') {
    if (ctx.out.json) ctx.out.document(doc);
    throw new DvoteError('UNHEALTHY', `the vote of ${r.voterId} could not be stored: ${r.error ?? 'no answer'}`, 'check the cluster with `dvote status` and retry');
  }
  if (ctx.out.json) ctx.out.document(doc);
  else if (r.status === 'accepted') ctx.out.print(`voter ${r.voterId}: ${r.choice} recorded on shard ${r.shard} (epoch ${r.epoch})`);
  else ctx.out.print(`voter ${r.voterId} already voted: ${r.choice} (shard ${r.shard}); the first vote stands`);
  if (r.status === 'already-voted') ctx.setExitCode(ExitCode.Unhealthy);
  return doc;
}
