// The broker log against NATS JetStream, same machine, same run:
// produce msgs/s and p50/p99 produce latency (100-byte messages, RF 3,
// acknowledged after commit), at one producer and at many, then consume
// msgs/s reading everything back.
//
//   npx tsx bench/queue.ts [--seconds S] [--warmup S] [--no-nats] [--out FILE]
//
// dvote: 3 managers + 3 brokers as local processes through the CLI
// (`dvote up --runtime process`), a topic of 3 partitions RF 3; every append
// is acknowledged after the partition's Raft commit, and each replica fsyncs
// its log before it counts towards that commit. NATS JetStream 2.10, twice:
// 3 servers on loopback, 3 R3 file streams (one per dvote partition, so both
// systems have three replicated logs), once with its defaults (periodic
// fsync: it acknowledges before the data is on disk) and once with
// `sync_interval: always` (fsync on every write: the durability dvote has,
// the comparison the target is about). Same client language (Node), message
// size, concurrency and machine. Needs `npm run build` and
// `bash scripts/install-peers.sh` (trixie's nats-server 2.10 in /opt; with
// only bookworm's 2.9 the sync-always rows are skipped). Writes JSON to
// bench/results/queue.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import * as hdr from 'hdr-histogram-js';
import { AckPolicy, connect, RetentionPolicy, StorageType, type NatsConnection } from 'nats';
import { runQueueLoad, type QueueLoadResult } from '../src/bench/queue-load.js';
import { describeMachine } from './lib/machine-load.js';
import { NATS_210_BINARY, NatsCluster, natsVersion } from './lib/nats-cluster.js';

const ROOT = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    'no-nats': { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench/results/queue.json') },
  },
});
const seconds = Number(args.seconds);
// Every system gets the same warm-up of the same load before each case: V8's
// JIT needs a few seconds of traffic before a Node server is at its steady
// state (dvote's one-producer latency falls from ~4.5 to ~2 ms over the first
// ~10 s after start), while Go's nats-server is compiled ahead of time.
const warmupMs = Number(args.warmup) * 1000;
for (const [flag, v, min] of [['--seconds', seconds, 1], ['--warmup', warmupMs / 1000, 0]] as const) {
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`error: ${flag} must be a number of seconds >= ${min} (e.g. ${flag} ${min === 0 ? 3 : 10})\n`);
    process.exit(2);
  }
}

interface Case {
  name: string;
  producers: number;
  batch: number;
  /** dvote side: 'producer' = one message per caller through the batching Producer. */
  mode?: 'append' | 'producer';
}

/** Equal terms: the same number of concurrent producers, each with one request in flight. */
const CASES: Case[] = [
  { name: '1 producer, 1 msg/request', producers: 1, batch: 1 },
  { name: '64 producers, 1 msg/request', producers: 64, batch: 1 },
  { name: '256 producers, 1 msg/request', producers: 256, batch: 1 },
  { name: '256 in flight, 1 msg each (dvote: batching Producer)', producers: 256, batch: 1, mode: 'producer' },
  { name: '1 producer, 100 msgs/request', producers: 1, batch: 100 },
  { name: '16 producers, 100 msgs/request', producers: 16, batch: 100 },
];

type System = 'dvote' | 'nats' | 'nats-sync';
const SYSTEMS: System[] = ['dvote', 'nats', 'nats-sync'];
const LABEL: Record<System, string> = { dvote: 'dvote', nats: 'JetStream defaults', 'nats-sync': 'JetStream sync always' };

interface Row {
  system: System;
  case: string;
  producers: number;
  batch: number;
  producePerSec: number;
  consumePerSec: number;
  p50: number;
  p99: number;
  max: number;
  failed: number;
  verified: boolean | null;
}

function dvoteCli(args: string[], env: Record<string, string>): string {
  return execFileSync(process.execPath, [join(ROOT, 'bin/dvote.js'), ...args], { env: { ...process.env, ...env, NO_COLOR: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
}

async function natsCase(system: System, nc: NatsConnection, c: Case, streams: string[], durationMs: number): Promise<Row> {
  const js = nc.jetstream();
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const payload = new Uint8Array(100).fill(120);
  let acked = 0;
  let failed = 0;
  const load = async (until: number, record: boolean) =>
    Promise.all(
      Array.from({ length: c.producers }, async (_, w) => {
        let k = 0;
        while (performance.now() < until) {
          const subject = `${streams[(w + k++) % streams.length]}.m`;
          const start = performance.now();
          try {
            if (c.batch === 1) await js.publish(subject, payload);
            // JetStream has no batch append: the closest is `batch` publishes in flight together.
            else await Promise.all(Array.from({ length: c.batch }, () => js.publish(subject, payload)));
            if (!record) continue;
            histogram.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
            acked += c.batch;
          } catch {
            if (record) failed += c.batch;
          }
        }
      }),
    );
  // Warm-up (as dvote gets), on the same streams; the readers below count from the stream's state.
  await load(performance.now() + warmupMs, false);
  const t0 = performance.now();
  await load(t0 + durationMs, true);
  const produceSec = (performance.now() - t0) / 1000;
  // Read everything back: one pull consumer per stream, no acks (like dvote's fetch from offset).
  const jsm = await nc.jetstreamManager();
  const c0 = performance.now();
  let consumed = 0;
  await Promise.all(
    streams.map(async (s) => {
      const name = `reader-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
      await jsm.consumers.add(s, { durable_name: name, ack_policy: AckPolicy.None });
      const consumer = await js.consumers.get(s, name);
      const info = await jsm.streams.info(s);
      const total = info.state.messages;
      let got = 0;
      while (got < total) {
        // Ask for no more than remain, so a fetch never waits out its expiry at the end.
        const batch = await consumer.fetch({ max_messages: Math.min(5000, total - got), expires: 5000 });
        let n = 0;
        for await (const _m of batch) n++;
        got += n;
        if (n === 0) break;
      }
      consumed += got;
      await jsm.consumers.delete(s, name);
    }),
  );
  const consumeSec = (performance.now() - c0) / 1000;
  const r: Row = {
    system,
    case: c.name,
    producers: c.producers,
    batch: c.batch,
    producePerSec: Math.round(acked / produceSec),
    consumePerSec: Math.round(consumed / consumeSec),
    p50: histogram.getValueAtPercentile(50) / 1000,
    p99: histogram.getValueAtPercentile(99) / 1000,
    max: histogram.maxValue / 1000,
    failed,
    verified: null,
  };
  histogram.destroy();
  return r;
}

function fromDvote(c: Case, r: QueueLoadResult): Row {
  return {
    system: 'dvote',
    case: c.name,
    producers: c.producers,
    batch: c.batch,
    producePerSec: Math.round(r.throughput.producePerSec),
    consumePerSec: Math.round(r.throughput.consumePerSec),
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    max: r.latencyMs.max,
    failed: r.messages.failed,
    verified: r.verify.ok,
  };
}

async function main(): Promise<void> {
  const machine = describeMachine();
  const stateDir = mkdtempSync(join(tmpdir(), 'dvote-bench-queue-'));
  const env = { DVOTE_STATE_DIR: stateDir };
  const cluster = `qb${process.pid % 10000}`;
  const nats = new Map<System, { cluster: NatsCluster; nc: NatsConnection }>();
  const rows: Row[] = [];
  const results: QueueLoadResult[] = [];
  const versions: Record<string, string | null> = {};
  try {
    process.stderr.write('starting dvote: 3 managers, 3 brokers (process runtime)\n');
    dvoteCli(['--cluster', cluster, 'up', '--runtime', 'process', '--managers', '3', '--brokers', '3', '--shards', '0', '--json'], env);
    const status = JSON.parse(dvoteCli(['--cluster', cluster, 'status', '--json'], env)) as { nodes: { role: string; endpoint: string }[] };
    const managers = status.nodes.filter((n) => n.role === 'manager').map((n) => n.endpoint.replace(/^http:\/\//, ''));
    const streams = ['bench0', 'bench1', 'bench2'];
    if (!args['no-nats']) {
      // Both JetStream runs use one binary, so fsync is the only difference.
      const has210 = natsVersion(NATS_210_BINARY) !== null;
      const binary = has210 ? NATS_210_BINARY : 'nats-server';
      if (!has210) process.stderr.write(`${NATS_210_BINARY} missing (bash scripts/install-peers.sh): JetStream sync-always rows skipped, defaults on bookworm's nats-server\n`);
      for (const system of ['nats', 'nats-sync'] as const) {
        if (system === 'nats-sync' && !has210) continue;
        versions[system] = natsVersion(binary);
        process.stderr.write(`starting ${LABEL[system]} (${versions[system]}): 3 servers, 3 R3 file streams\n`);
        const c = await NatsCluster.start(3, { binary, syncAlways: system === 'nats-sync' });
        nats.set(system, { cluster: c, nc: await connect({ servers: c.urls() }) });
      }
    }
    for (const [i, c] of CASES.entries()) {
      // Rotate the order so drift in the machine's load falls on every system.
      const order = SYSTEMS.map((_, k) => SYSTEMS[(i + k) % SYSTEMS.length]!);
      for (const system of order) {
        if (system === 'dvote') {
          process.stderr.write(`dvote: ${c.name} ...\n`);
          const r = await runQueueLoad({ managers, partitions: 3, replicationFactor: 3, durationMs: seconds * 1000, producers: c.producers, batch: c.batch, messageBytes: 100, mode: c.mode ?? 'append', warmupMs });
          results.push(r);
          rows.push(fromDvote(c, r));
          continue;
        }
        const n = nats.get(system);
        if (!n) continue;
        process.stderr.write(`${LABEL[system]}: ${c.name} ...\n`);
        const jsm = await n.nc.jetstreamManager();
        for (const s of streams) {
          await jsm.streams.delete(s).catch(() => undefined);
          await jsm.streams.add({ name: s, subjects: [`${s}.>`], num_replicas: 3, storage: StorageType.File, retention: RetentionPolicy.Limits });
        }
        rows.push(await natsCase(system, n.nc, c, streams, seconds * 1000));
      }
    }
  } finally {
    for (const n of nats.values()) {
      await n.nc.close().catch(() => undefined);
      await n.cluster.stop();
    }
    try {
      dvoteCli(['--cluster', cluster, 'down', '--volumes'], env);
    } catch (e) {
      process.stderr.write(`down failed: ${(e as Error).message}\n`);
    }
    rmSync(stateDir, { recursive: true, force: true });
  }
  const table = new Table({ head: ['case', 'system', 'produce msg/s', 'p50 ms', 'p99 ms', 'max ms', 'consume msg/s', 'failed', 'verified', 'dvote/this produce', 'dvote/this consume'] });
  for (const c of CASES) {
    const d = rows.find((r) => r.case === c.name && r.system === 'dvote');
    for (const system of SYSTEMS) {
      const r = rows.find((x) => x.case === c.name && x.system === system);
      if (!r) continue;
      const ratio = r !== d && d;
      table.push([
        system === 'dvote' ? c.name : '',
        LABEL[system],
        r.producePerSec.toLocaleString('en'),
        r.p50.toFixed(2),
        r.p99.toFixed(2),
        r.max.toFixed(1),
        r.consumePerSec.toLocaleString('en'),
        r.failed,
        r.verified === null ? '-' : r.verified ? 'yes' : 'NO',
        ratio ? (d.producePerSec / r.producePerSec).toFixed(2) : '',
        ratio ? (d.consumePerSec / r.consumePerSec).toFixed(2) : '',
      ]);
    }
  }
  process.stdout.write(`${table.toString()}\n`);
  mkdirSync(dirname(args.out!), { recursive: true });
  writeFileSync(args.out!, JSON.stringify({ schema: 'dvote.bench-queue/v2', at: new Date().toISOString(), machine, natsVersions: versions, seconds, warmupSeconds: warmupMs / 1000, rows, dvote: results }, null, 2));
  process.stderr.write(`wrote ${args.out}\n`);
  if (results.some((r) => !r.verify.ok)) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
