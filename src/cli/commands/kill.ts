import { Option, type Command } from 'commander';
import { ShardDirectory } from '../../client/shard-directory.js';
import { DvoteError } from '../../core/errors.js';
import { selectForCluster, type RuntimePreference } from '../../runtime/select.js';
import type { ObservedNode, Runtime } from '../../runtime/runtime.js';
import { parseDuration, sleep } from '../../runtime/wait.js';
import { collectStatus } from '../cluster-status.js';
import type { CommandContext } from '../main.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export type FaultAction = 'kill' | 'pause' | 'partition';

export interface KillOptions {
  nodes: string[];
  role?: string;
  leader?: boolean;
  /** With role broker: the leader of this "<topic>/<partition>". */
  leaderOf?: string;
  /** With role shard-primary: the shard whose current primary is the target. */
  shard?: number;
  random?: boolean;
  signal: 'KILL' | 'TERM';
  action: FaultAction;
  restartAfterMs?: number;
}

export interface KillDoc {
  schema: 'dvote.kill/v1';
  cluster: string;
  runtime: string;
  action: FaultAction;
  signal?: 'KILL' | 'TERM';
  targets: { name: string; role: string }[];
  at: string;
  /** When --restart-after brought them back. */
  restoredAt?: string;
}

export function registerKill(program: Command, run: Run): void {
  program
    .command('kill')
    .description('break nodes on purpose: SIGKILL (default), freeze (--pause) or cut off the network (--partition)')
    .argument('[nodes...]', 'node names (see dvote status), or shard-<n>-primary for the current primary of shard n')
    .option('--role <role>', 'pick among nodes of this role (manager, broker, shard, postgres), or shard-primary with --shard')
    .option('--shard <n>', 'with --role shard-primary: the shard whose primary to hit')
    .option('--leader', 'with --role manager: the current manager leader')
    .option('--leader-of <topic/partition>', 'with --role broker: the broker leading this partition (e.g. votes/0)')
    .option('--random', 'one random running node (of --role if given)')
    .addOption(new Option('--signal <signal>', 'signal for a kill').choices(['KILL', 'TERM']).default('KILL'))
    .option('--pause', 'freeze the node (SIGSTOP / docker pause) instead of killing it')
    .option('--partition', 'disconnect the node from the cluster network (docker runtime only)')
    .option('--restart-after <duration>', 'bring the node(s) back after this long (e.g. 5s); otherwise they stay down until `dvote up`')
    .option('--runtime <kind>', 'look only in this runtime (docker|process)')
    .addHelpText(
      'after',
      `
A killed node stays down (automatic crash-restart never undoes an injected
kill) until --restart-after brings it back or \`dvote up\` converges the cluster.

Examples:
  $ dvote kill --role manager --leader
  $ dvote kill shard-1-primary              # whichever PostgreSQL is shard 1's primary now
  $ dvote kill --role shard-primary --shard 2
  $ dvote kill --role broker --leader-of votes-1/0 --restart-after 3s
  $ dvote kill manager-2 broker-1 --signal TERM
  $ dvote kill --random --pause --restart-after 5s
  $ dvote kill broker-3 --partition --restart-after 10s`,
    )
    .action(async (nodes: string[], _o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as Record<string, string | boolean | undefined>;
        if (o.pause && o.partition) throw new DvoteError('USAGE', '--pause and --partition cannot be combined', 'pick one fault');
        let restartAfterMs: number | undefined;
        if (typeof o.restartAfter === 'string') {
          const d = parseDuration(o.restartAfter);
          if (d === null) throw new DvoteError('USAGE', `--restart-after "${o.restartAfter}" is not a duration`, 'use e.g. 5s or 500ms');
          restartAfterMs = d;
        }
        let shard: number | undefined;
        if (typeof o.shard === 'string') {
          if (!/^[1-9]\d{0,3}$/.test(o.shard)) throw new DvoteError('USAGE', `--shard "${o.shard}" is not a shard number`, 'use e.g. --shard 1');
          shard = Number(o.shard);
        }
        await kill(
          ctx,
          {
            nodes,
            ...(typeof o.role === 'string' ? { role: o.role } : {}),
            ...(shard !== undefined ? { shard } : {}),
            leader: Boolean(o.leader),
            ...(typeof o.leaderOf === 'string' ? { leaderOf: o.leaderOf } : {}),
            random: Boolean(o.random),
            signal: (o.signal as 'KILL' | 'TERM') ?? 'KILL',
            action: o.pause ? 'pause' : o.partition ? 'partition' : 'kill',
            ...(restartAfterMs !== undefined ? { restartAfterMs } : {}),
          },
          (o.runtime as RuntimePreference | undefined) ?? 'auto',
        );
      }, cmd),
    );
}

const PRIMARY_ALIAS = /^shard-([1-9]\d{0,3})-primary$/;

/** The current primary of a shard, from the managers' shard record (an alias is resolved at the moment of the kill). */
export async function shardPrimary(runtime: Runtime, cluster: string, shard: number): Promise<string> {
  const managers = (await runtime.listNodes(cluster)).filter((n) => n.role === 'manager' && n.state === 'running').map((n) => n.endpoint);
  if (managers.length === 0) throw new DvoteError('UNHEALTHY', `no manager of cluster "${cluster}" is running to say who is shard ${shard}'s primary`, 'run `dvote up` first');
  const dir = new ShardDirectory({ managers, timeoutMs: 10_000 });
  try {
    const snap = await dir.refresh().catch((e: unknown) => {
      throw new DvoteError('UNHEALTHY', `cannot read the shard records from the managers: ${(e as Error).message}`, 'check `dvote status`');
    });
    const rec = snap.shards.find((r) => r.shard === shard);
    if (!rec) {
      throw new DvoteError('NOT_FOUND', `cluster "${cluster}" has no shard ${shard}`, snap.shards.length ? `its shards are 1..${snap.shards.length}` : 'it has no voting shards');
    }
    return rec.primary;
  } finally {
    await dir.stop();
  }
}

export async function resolveTargets(runtime: Runtime, cluster: string, o: KillOptions): Promise<ObservedNode[]> {
  const all = await runtime.listNodes(cluster);
  const byPrimaryRole = o.role === 'shard-primary' && !o.random;
  const chosenWays = [o.nodes.length > 0, Boolean(o.leader), Boolean(o.leaderOf), Boolean(o.random), byPrimaryRole].filter(Boolean).length;
  if (chosenWays === 0) {
    throw new DvoteError('USAGE', 'no target given', 'name nodes, or use --role manager --leader, --role broker --leader-of <topic>/<partition>, --role shard-primary --shard <n>, or --random');
  }
  if (chosenWays > 1) throw new DvoteError('USAGE', 'give node names, --leader, --leader-of, --role shard-primary or --random, not several', 'pick one way to choose targets');
  if (o.shard !== undefined && o.role !== 'shard-primary') throw new DvoteError('USAGE', '--shard needs --role shard-primary', 'e.g. dvote kill --role shard-primary --shard 1');
  if (o.role === 'shard-primary') {
    let shard = o.shard;
    if (shard === undefined) {
      if (!o.random) throw new DvoteError('USAGE', '--role shard-primary needs --shard <n> (or --random)', 'e.g. dvote kill --role shard-primary --shard 1');
      const shards = [...new Set(all.filter((n) => n.role === 'shard').map((n) => Number(n.labels['io.dvote.shard'])))].filter((x) => x > 0);
      if (shards.length === 0) throw new DvoteError('NOT_FOUND', `cluster "${cluster}" has no voting shards`, 'see `dvote status`');
      shard = shards[Math.floor(Math.random() * shards.length)]!;
    }
    const name = await shardPrimary(runtime, cluster, shard);
    const node = all.find((x) => x.name === name);
    if (!node) throw new DvoteError('NOT_FOUND', `shard ${shard}'s primary ${name} has no node in the runtime`, 'run `dvote up` to recreate it');
    return [node];
  }
  if (o.leaderOf) {
    if (o.role !== 'broker') throw new DvoteError('USAGE', '--leader-of needs --role broker', 'e.g. dvote kill --role broker --leader-of votes/0');
    const m = /^(.+)\/(\d+)$/.exec(o.leaderOf);
    if (!m) throw new DvoteError('USAGE', `--leader-of "${o.leaderOf}" is not <topic>/<partition>`, 'e.g. --leader-of votes/0');
    const status = await collectStatus(runtime, cluster);
    const row = status.partitions.find((p) => p.topic === m[1] && p.partition === Number(m[2]));
    if (!row) {
      const known = status.partitions.map((p) => `${p.topic}/${p.partition}`);
      throw new DvoteError('NOT_FOUND', `no broker reports partition ${o.leaderOf}`, known.length ? `known partitions: ${known.slice(0, 20).join(', ')}` : 'create the topic first');
    }
    if (!row.leader) throw new DvoteError('UNHEALTHY', `partition ${o.leaderOf} has no leader right now`, 'check `dvote status`; try again in a moment');
    return [all.find((x) => x.name === row.leader)!];
  }
  if (o.nodes.length > 0) {
    const names: string[] = [];
    for (const n of o.nodes) {
      const m = PRIMARY_ALIAS.exec(n);
      names.push(m ? await shardPrimary(runtime, cluster, Number(m[1])) : n);
    }
    const unknown = names.filter((n) => !all.some((x) => x.name === n));
    if (unknown.length > 0) {
      throw new DvoteError('NOT_FOUND', `no node ${unknown.map((u) => `"${u}"`).join(', ')} in cluster "${cluster}"`, `pick from: ${all.map((n) => n.name).join(', ')}`);
    }
    return names.map((n) => all.find((x) => x.name === n)!);
  }
  if (o.leader) {
    if (o.role !== 'manager') throw new DvoteError('USAGE', '--leader needs --role manager', 'e.g. dvote kill --role manager --leader');
    const status = await collectStatus(runtime, cluster);
    if (!status.managerLeader) throw new DvoteError('UNHEALTHY', 'the managers have no leader right now', 'check `dvote status`; try again in a moment');
    return [all.find((x) => x.name === status.managerLeader)!];
  }
  const pool = all.filter((n) => n.state === 'running' && (!o.role || n.role === o.role));
  if (pool.length === 0) throw new DvoteError('NOT_FOUND', `no running node${o.role ? ` with role ${o.role}` : ''} to pick from`, 'see `dvote status`');
  return [pool[Math.floor(Math.random() * pool.length)]!];
}

export async function kill(ctx: CommandContext, o: KillOptions, pref: RuntimePreference = 'auto'): Promise<KillDoc> {
  const cluster = ctx.globals.cluster ?? 'dvote';
  const { runtime } = await selectForCluster(cluster, pref);
  const targets = await resolveTargets(runtime, cluster, o);
  const names = targets.map((t) => t.name).join(', ');
  const verb = { kill: `killing (SIG${o.signal})`, pause: 'pausing', partition: 'cutting off' }[o.action];
  await ctx.out.step(`${verb} ${names}`, async () => {
    for (const t of targets) {
      if (o.action === 'kill') await runtime.kill(cluster, t.name, { signal: o.signal });
      else if (o.action === 'pause') await runtime.pause(cluster, t.name);
      else await runtime.disconnect(cluster, t.name);
    }
  });
  const doc: KillDoc = {
    schema: 'dvote.kill/v1',
    cluster,
    runtime: runtime.kind,
    action: o.action,
    ...(o.action === 'kill' ? { signal: o.signal } : {}),
    targets: targets.map((t) => ({ name: t.name, role: t.role })),
    at: new Date().toISOString(),
  };
  if (o.restartAfterMs !== undefined) {
    await ctx.out.step(`bringing ${names} back after ${(o.restartAfterMs / 1000).toFixed(1)}s`, async () => {
      await sleep(o.restartAfterMs!, ctx.signal);
      for (const t of targets) await runtime.revive(cluster, t.name);
    });
    doc.restoredAt = new Date().toISOString();
  }
  ctx.out.document(doc);
  if (!ctx.out.json) {
    ctx.out.print(
      o.restartAfterMs !== undefined
        ? `${names}: ${o.action} done, restored`
        : `${names}: ${o.action} done; it stays down until \`dvote up\` (or use --restart-after)`,
    );
  }
  return doc;
}
