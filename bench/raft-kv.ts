// The Raft managers against etcd, same machine, same run:
// - committed writes/s and client-observed PUT latency (p50/p99) of three
//   members on loopback, fsync on, 100-byte values, at concurrency 1 and 64,
//   measured against the LEADER (so forwarding by followers is not measured);
// - failover: SIGKILL the leader, time until the next write succeeds, with a
//   probe writing to every member every 10 ms; the killed member is restarted
//   and caught up before the next kill.
//
//   npx tsx bench/raft-kv.ts [--quick] [--kills N] [--seconds S] [--warmup S] [--no-etcd] [--out FILE]
//
// Needs `npm run build` (the managers run the bundled node program) and
// etcd (bash scripts/install-peers.sh). Prints a table and writes JSON to
// bench/results/raft-kv.json. The two systems are measured alternately (the
// measured time of each is cut into slices that take turns, and the kills
// alternate) so that the machine's noise falls on both; compare only ratios
// from one run.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { Etcd3 } from 'etcd3';
import { Agent, Pool, request } from 'undici';
import { runClosedLoop, type ClosedLoopResult } from './lib/closed-loop.js';
import { EtcdCluster, directEtcdOptions, etcdVersion, type EtcdMember } from './lib/etcd-cluster.js';
import { timeFailover, type FailoverSample } from './lib/failover-probe.js';
import { LatencyHistogram, minMedianMax, round } from './lib/latency-histogram.js';
import { describeMachine, sampleLoad, type LoadSample } from './lib/machine-load.js';
import { ManagerCluster, parsePrometheus } from './lib/manager-cluster.js';
import { sleep, waitUntil } from './lib/wait-until.js';

type System = 'dvote' | 'etcd';

interface ThroughputCase extends ClosedLoopResult {
  system: System;
  load: LoadSample;
  /** CPU the load generator (this process) used, in % of one core. */
  clientCpuPct: number;
  /** Where the time goes, from the servers' own counters. */
  server: ServerCounters;
}

interface ServerCounters {
  /** Writes committed during the window (leader's proposals / etcd's committed proposals). */
  writes: number;
  /** fsyncs per write: the leader's, and the followers' mean. */
  leaderFsyncsPerWrite: number;
  followerFsyncsPerWrite: number;
  /** Server CPU, all three members together, per write and in % of one core. */
  cpuMsPerWrite: number;
  cpuPct: number;
  /** dvote only: Raft messages the leader sent per write. */
  peerMessagesPerWrite?: number;
  /** dvote only: mean server-side write latency (HTTP handler: propose → applied). */
  serverWriteMeanMs?: number;
  leaderChanged: boolean;
}

interface FailoverSeries {
  system: System;
  samples: FailoverSample[];
  summaryMs: { n: number; min: number; median: number; max: number } | null;
  failures: number;
  load: LoadSample;
}

const VALUE = 'v'.repeat(100);

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    kills: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'no-etcd': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/raft-kv.json' },
  },
});

const config = {
  quick: args.quick,
  concurrency: [1, 64],
  warmupMs: Number(args.warmup ?? (args.quick ? 1 : 2)) * 1000,
  durationMs: Number(args.seconds ?? (args.quick ? 3 : 10)) * 1000,
  /** The measured time of each system is cut into this many slices, alternating with the other system. */
  slices: args.quick ? 3 : 5,
  kills: Number(args.kills ?? (args.quick ? 5 : 20)),
  valueBytes: VALUE.length,
  members: 3,
  probeIntervalMs: 10,
  etcd: !args['no-etcd'],
};

function log(msg: string): void {
  process.stderr.write(`raft-kv: ${msg}\n`);
}

// ------------------------------------------------------------------ dvote

/** A system under write load: how to PUT, and the server counters that say where the time goes. */
interface LoadTarget {
  system: System;
  put(key: string): Promise<void>;
  counters(): Promise<CounterSnapshot>;
  /** The member written to is still the leader. */
  stillLeader(): Promise<boolean>;
  close(): Promise<void>;
}

/** Cumulative server counters at one moment (differences of two snapshots are what a slice cost). */
interface CounterSnapshot {
  writes: number;
  leaderFsyncs: number;
  /** Sum over the followers. */
  followerFsyncs: number;
  followers: number;
  /** CPU seconds of all members together. */
  cpuSec: number;
  peerMessages?: number;
  handlerSec?: number;
  handlerCount?: number;
}

async function dvoteTarget(c: ManagerCluster, concurrency: number): Promise<LoadTarget> {
  const leader = await c.waitCaughtUp(30_000);
  const pool = new Pool(`http://${leader.http}`, { connections: concurrency, pipelining: 1, keepAliveTimeout: 30_000 });
  return {
    system: 'dvote',
    async put(key) {
      const res = await pool.request({
        path: `/v1/kv/${key}`,
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ value: VALUE }),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} ${text.slice(0, 60)}`);
    },
    async counters() {
      const metrics = new Map<string, Map<string, number>>();
      for (const m of c.members) if (m.child) metrics.set(m.id, await c.metrics(m));
      const status = await c.status(leader);
      const get = (id: string, name: string) => metrics.get(id)?.get(name) ?? 0;
      const followers = c.members.filter((m) => m.id !== leader.id);
      return {
        writes: get(leader.id, 'dvote_raft_proposals'),
        leaderFsyncs: get(leader.id, 'dvote_raft_fsyncs'),
        followerFsyncs: followers.reduce((sum, m) => sum + get(m.id, 'dvote_raft_fsyncs'), 0),
        followers: followers.length,
        cpuSec: c.members.reduce((sum, m) => sum + get(m.id, 'process_cpu_seconds_total'), 0),
        peerMessages: (status.transport as { sentMessages: number }).sentMessages,
        handlerSec: get(leader.id, 'dvote_manager_write_seconds_sum'),
        handlerCount: get(leader.id, 'dvote_manager_write_seconds_count'),
      };
    },
    stillLeader: async () => (await c.leader())?.id === leader.id,
    close: () => pool.close(),
  };
}

async function dvoteFailover(c: ManagerCluster, agent: Agent, round_: number): Promise<FailoverSample> {
  const leader = await c.waitCaughtUp(30_000);
  await sleep(300);
  const write = async (target: string, seq: number): Promise<boolean> => {
    const m = c.member(target);
    try {
      const res = await request(`http://${m.http}/v1/kv/failover/${round_}/${seq}`, {
        method: 'PUT',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ value: VALUE }),
        headersTimeout: 1_000,
        bodyTimeout: 1_000,
      });
      await res.body.text();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  };
  const sample = await timeFailover(() => c.kill(leader.id), {
    targets: c.members.map((m) => m.id),
    write,
    intervalMs: config.probeIntervalMs,
    timeoutMs: 15_000,
  });
  c.restart(leader.id);
  await c.waitCaughtUp(30_000);
  return sample;
}

// ------------------------------------------------------------------ etcd

async function etcdCaughtUp(c: EtcdCluster, timeoutMs: number): Promise<EtcdMember> {
  return waitUntil(`every etcd member caught up with the leader (logs in ${c.baseDir})`, timeoutMs, async () => {
    const leader = await c.leader();
    if (!leader) return null;
    const target = await c.raftIndex(leader);
    if (target === null) return null;
    for (const m of c.members) {
      const applied = await c.appliedIndex(m);
      if (applied === null || applied < target) return null;
    }
    return leader;
  });
}

async function etcdTarget(c: EtcdCluster): Promise<LoadTarget> {
  const leader = await etcdCaughtUp(c, 30_000);
  const client = new Etcd3({ hosts: leader.clientUrl });
  await client.put('bench/hello').value('x'); // connect before the clock starts
  return {
    system: 'etcd',
    async put(key) {
      await client.put(key).value(VALUE);
    },
    async counters() {
      const metrics = new Map<string, Map<string, number>>();
      for (const m of c.members) {
        if (!m.child) continue;
        const res = await fetch(`${m.clientUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
        metrics.set(m.name, parsePrometheus(await res.text()));
      }
      const get = (name: string, metric: string) => metrics.get(name)?.get(metric) ?? 0;
      const fsyncs = 'etcd_disk_wal_fsync_duration_seconds_count';
      const followers = c.members.filter((m) => m.name !== leader.name);
      return {
        writes: get(leader.name, 'etcd_server_proposals_committed_total'),
        leaderFsyncs: get(leader.name, fsyncs),
        followerFsyncs: followers.reduce((sum, m) => sum + get(m.name, fsyncs), 0),
        followers: followers.length,
        cpuSec: c.members.reduce((sum, m) => sum + get(m.name, 'process_cpu_seconds_total'), 0),
      };
    },
    stillLeader: async () => (await c.leader())?.name === leader.name,
    close: async () => client.close(),
  };
}

/**
 * Measures every target at one concurrency: a warm-up each, then the
 * measured time cut into slices that alternate between the systems (A B, B A,
 * A B, ...), so that the machine's drifting load falls on all of them alike.
 */
async function measureThroughput(targets: LoadTarget[], concurrency: number): Promise<ThroughputCase[]> {
  const sliceMs = config.durationMs / config.slices;
  const acc = targets.map((t) => ({
    target: t,
    histogram: new LatencyHistogram(),
    completed: 0,
    errors: 0,
    errorKinds: {} as Record<string, number>,
    clientCpuSec: 0,
    seq: 0,
    delta: { writes: 0, leaderFsyncs: 0, followerFsyncs: 0, followers: 1, cpuSec: 0, peerMessages: 0, handlerSec: 0, handlerCount: 0 } as Required<CounterSnapshot>,
  }));
  const run = async (a: (typeof acc)[number], durationMs: number, measured: boolean): Promise<void> => {
    const before = measured ? await a.target.counters() : null;
    const cpu0 = process.cpuUsage();
    const r = await runClosedLoop({
      concurrency,
      warmupMs: 0,
      durationMs,
      seqBase: a.seq,
      ...(measured ? { histogram: a.histogram } : {}),
      op: (worker, seq) => a.target.put(`bench/c${concurrency}/${worker}/${seq}`),
    });
    a.seq = r.nextSeq;
    if (!before) return;
    const cpu = process.cpuUsage(cpu0);
    const after = await a.target.counters();
    a.completed += r.completed;
    a.errors += r.errors;
    for (const [k, v] of Object.entries(r.errorKinds)) a.errorKinds[k] = (a.errorKinds[k] ?? 0) + v;
    a.clientCpuSec += (cpu.user + cpu.system) / 1e6;
    for (const key of ['writes', 'leaderFsyncs', 'followerFsyncs', 'cpuSec', 'peerMessages', 'handlerSec', 'handlerCount'] as const) {
      a.delta[key] += (after[key] ?? 0) - (before[key] ?? 0);
    }
    a.delta.followers = after.followers;
  };
  for (const a of acc) await run(a, config.warmupMs, false);
  for (let slice = 0; slice < config.slices; slice++) {
    for (const a of slice % 2 === 0 ? acc : [...acc].reverse()) await run(a, sliceMs, true);
  }
  const results: ThroughputCase[] = [];
  for (const a of acc) {
    const seconds = config.durationMs / 1000;
    const d = a.delta;
    const perWrite = (x: number) => x / Math.max(1, d.writes);
    results.push({
      system: a.target.system,
      concurrency,
      seconds,
      completed: a.completed,
      opsPerSec: round(a.completed / seconds, 1),
      errors: a.errors,
      errorKinds: a.errorKinds,
      latency: a.histogram.summary(),
      nextSeq: a.seq,
      load: sampleLoad(),
      clientCpuPct: round((a.clientCpuSec / seconds) * 100, 0),
      server: {
        writes: d.writes,
        leaderFsyncsPerWrite: round(perWrite(d.leaderFsyncs), 3),
        followerFsyncsPerWrite: round(perWrite(d.followerFsyncs) / Math.max(1, d.followers), 3),
        cpuMsPerWrite: round(perWrite(d.cpuSec * 1000), 3),
        cpuPct: round((d.cpuSec / seconds) * 100, 0),
        ...(a.target.system === 'dvote'
          ? { peerMessagesPerWrite: round(perWrite(d.peerMessages), 2), serverWriteMeanMs: round((d.handlerSec * 1000) / Math.max(1, d.handlerCount), 2) }
          : {}),
        leaderChanged: !(await a.target.stillLeader()),
      },
    });
  }
  return results;
}

async function etcdFailover(c: EtcdCluster, round_: number): Promise<FailoverSample> {
  const leader = await etcdCaughtUp(c, 30_000);
  // One client per member, without etcd3's retries and circuit breakers, connected before the kill.
  const clients = new Map(c.members.map((m) => [m.name, new Etcd3(directEtcdOptions(m.clientUrl, 1_000))]));
  try {
    await Promise.all([...clients.values()].map((cl) => cl.maintenance.status()));
    await sleep(300);
    const sample = await timeFailover(() => c.kill(leader.name), {
      targets: c.members.map((m) => m.name),
      write: async (target, seq) => {
        try {
          await clients.get(target)!.put(`failover/${round_}/${seq}`).value(VALUE);
          return true;
        } catch {
          return false;
        }
      },
      intervalMs: config.probeIntervalMs,
      timeoutMs: 15_000,
    });
    c.restart(leader.name);
    await etcdCaughtUp(c, 30_000);
    return sample;
  } finally {
    for (const cl of clients.values()) cl.close();
  }
}

// ------------------------------------------------------------------ report

function failoverSeries(system: System, samples: FailoverSample[]): FailoverSeries {
  const ok = samples.filter((s) => s.ok).map((s) => round(s.ms, 0));
  return { system, samples, summaryMs: minMedianMax(ok), failures: samples.length - ok.length, load: sampleLoad() };
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(resolve('node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev} + uncommitted changes in src/` : rev;
  } catch {
    return 'unknown';
  }
}

function printReport(throughput: ThroughputCase[], failovers: FailoverSeries[], ratios: Record<string, number | null>): void {
  const t = new Table({
    head: ['system', 'conc', 'writes/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'fsync/write L|F', 'server CPU ms/write', 'server CPU %', 'client CPU %', 'load1'],
  });
  for (const r of throughput) {
    t.push([
      r.system,
      r.concurrency,
      r.opsPerSec,
      r.latency.p50Ms,
      r.latency.p99Ms,
      r.latency.maxMs,
      r.errors,
      `${r.server.leaderFsyncsPerWrite} | ${r.server.followerFsyncsPerWrite}`,
      r.server.cpuMsPerWrite,
      r.server.cpuPct,
      r.clientCpuPct,
      r.load.load1,
    ]);
  }
  process.stdout.write(`\nCommitted writes (PUT, ${config.valueBytes}-byte values, 3 members on loopback, fsync on, sent to the leader; ${config.durationMs / 1000} s in ${config.slices} slices alternating between the systems, after ${config.warmupMs / 1000} s warm-up)\n`);
  process.stdout.write(`${t.toString()}\n`);

  const f = new Table({ head: ['system', 'kills', 'failed', 'min ms', 'median ms', 'max ms', 'load1'] });
  for (const s of failovers) {
    f.push([s.system, s.samples.length, s.failures, s.summaryMs?.min ?? '-', s.summaryMs?.median ?? '-', s.summaryMs?.max ?? '-', s.load.load1]);
  }
  process.stdout.write(`\nFailover: SIGKILL the leader → first successful write (probe writes to every member every ${config.probeIntervalMs} ms)\n`);
  process.stdout.write(`${f.toString()}\n`);
  const r = new Table({ head: ['ratio dvote / etcd', 'value'] });
  for (const [k, v] of Object.entries(ratios)) r.push([k, v ?? '-']);
  process.stdout.write(`\n${r.toString()}\n`);
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  const machine = describeMachine();
  const etcdVer = config.etcd ? etcdVersion() : null;
  if (config.etcd && !etcdVer) throw new Error('etcd is not installed: run bash scripts/install-peers.sh, or pass --no-etcd');
  log(`${machine.cores} cores, load ${JSON.stringify(sampleLoad())}, etcd ${etcdVer ?? 'skipped'}, etcd3 ${packageVersion('etcd3')}`);
  const startedAt = new Date().toISOString();
  const throughput: ThroughputCase[] = [];
  const failoverSamples: Record<System, FailoverSample[]> = { dvote: [], etcd: [] };

  let managers: ManagerCluster | null = null;
  let etcd: EtcdCluster | null = null;
  const agent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  try {
    managers = await ManagerCluster.start({ size: config.members });
    if (config.etcd) etcd = await EtcdCluster.start({ size: config.members });

    for (const concurrency of config.concurrency) {
      const targets = [await dvoteTarget(managers, concurrency), ...(etcd ? [await etcdTarget(etcd)] : [])];
      try {
        log(`throughput at concurrency ${concurrency}: ${targets.map((t) => t.system).join(' and ')}, ${config.slices} alternating slices ...`);
        for (const r of await measureThroughput(targets, concurrency)) {
          log(`  ${r.system}: ${r.opsPerSec} writes/s, p50 ${r.latency.p50Ms} ms, p99 ${r.latency.p99Ms} ms, errors ${r.errors}, load ${r.load.load1}`);
          throughput.push(r);
        }
      } finally {
        for (const t of targets) await t.close();
      }
    }

    for (let k = 0; k < config.kills; k++) {
      const d = await dvoteFailover(managers, agent, k);
      failoverSamples.dvote.push(d);
      let line = `failover ${k + 1}/${config.kills}: dvote ${d.ok ? `${Math.round(d.ms)} ms` : 'FAILED'}`;
      if (etcd) {
        const e = await etcdFailover(etcd, k);
        failoverSamples.etcd.push(e);
        line += `, etcd ${e.ok ? `${Math.round(e.ms)} ms` : 'FAILED'}`;
      }
      log(`${line}, load ${sampleLoad().load1}`);
    }
  } finally {
    await agent.close().catch(() => {});
    await managers?.stop();
    await etcd?.stop();
  }

  const failovers = [failoverSeries('dvote', failoverSamples.dvote), ...(config.etcd ? [failoverSeries('etcd', failoverSamples.etcd)] : [])];
  const find = (system: System, c: number) => throughput.find((r) => r.system === system && r.concurrency === c);
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? round(a / b, 2) : null);
  const ratios = {
    'writes/s at concurrency 1': ratio(find('dvote', 1)?.opsPerSec, find('etcd', 1)?.opsPerSec),
    'writes/s at concurrency 64': ratio(find('dvote', 64)?.opsPerSec, find('etcd', 64)?.opsPerSec),
    'p99 latency at concurrency 64': ratio(find('dvote', 64)?.latency.p99Ms, find('etcd', 64)?.latency.p99Ms),
    'failover median': ratio(failovers[0]?.summaryMs?.median, failovers[1]?.summaryMs?.median),
  };
  const dvoteFailoverMedian = failovers[0]?.summaryMs?.median ?? null;
  const targets = {
    failoverMedianUnder1s: dvoteFailoverMedian !== null && dvoteFailoverMedian < 1000,
    writesAt64AtLeastEtcd: ratios['writes/s at concurrency 64'] === null ? null : ratios['writes/s at concurrency 64'] >= 1,
  };
  printReport(throughput, failovers, ratios);
  process.stdout.write(`\ntargets: dvote failover median < 1 s: ${targets.failoverMedianUnder1s}; dvote writes/s at 64 >= etcd: ${targets.writesAt64AtLeastEtcd}\n`);

  const doc = {
    schema: 'dvote.bench.raft-kv/v1',
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `npx tsx bench/raft-kv.ts ${process.argv.slice(2).join(' ')}`.trim(),
    revision: gitRevision(),
    machine: { ...machine, loadAtEnd: sampleLoad() },
    versions: { etcd: etcdVer, etcd3: packageVersion('etcd3'), undici: packageVersion('undici') },
    config,
    method: {
      throughput: 'closed loop, unique keys; warm-up per system, then the measured time in slices alternating between the systems; dvote: undici Pool to the leader (one connection per worker), PUT /v1/kv/<key>; etcd: npm etcd3 client (one gRPC channel) to the leader, put; server counters cover the measured slices only',
      failover: 'SIGKILL the leader, then every 10 ms one write to every member (followers forward); time from the kill to the first successful write sent after it; the killed member is restarted and caught up before the next kill',
    },
    throughput,
    failover: failovers,
    ratios,
    targets,
  };
  const out = resolve(args.out!);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  log(`wrote ${out}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`raft-kv: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
