// Where a vote's latency goes when the machine is nearly idle, step by step,
// on a fresh default cluster of local processes (its own state dir, removed
// afterwards). One operation at a time with a 10 ms pause between them (the
// way votes arrive at low load), then back to back:
//   1. a one-row INSERT commit on shard 1's primary, straight from a client
//      (a scratch table, dropped afterwards): PostgreSQL alone;
//   2. an append of one vote-sized message to a partition of RF 3 (topic
//      "probe", not the vote log): the brokers' Raft alone;
//   3. `dvote bench --rate 100`: the whole path, with the shard service's
//      per-step histograms (primary commit, log append) over that run.
//   npx tsx bench/idle-path.ts        (after npm run build)
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { BrokerClient } from '../src/client/broker-client.js';

const root = join(import.meta.dirname, '..');
const env = { ...process.env, DVOTE_STATE_DIR: '/tmp/dvote-idle-path', NO_COLOR: '1' };
const dvote = (args: string[]) => execa(process.execPath, [join(root, 'bin/dvote.js'), '--cluster', 'idle', ...args], { env });
const N = 300;

function summary(ms: number[]): string {
  const t = [...ms].sort((a, b) => a - b);
  const q = (p: number) => t[Math.min(t.length - 1, Math.floor(t.length * p))]!.toFixed(2);
  return `p10 ${q(0.1)}  p50 ${q(0.5)}  p90 ${q(0.9)}  p99 ${q(0.99)} ms`;
}

async function series(f: (i: number) => Promise<unknown>, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const s = performance.now();
    await f(i);
    out.push(performance.now() - s);
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  return out;
}

/** The shard service's step metric: step -> bucket bound (or "sum", "count") -> value. */
async function steps(url: string): Promise<Map<string, Map<string, number>>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, Map<string, number>>();
  for (const line of text.split('\n')) {
    const sumOrCount = /^dvote_vote_step_seconds_(sum|count)\{/.exec(line)?.[1];
    const le = sumOrCount ?? /^dvote_vote_step_seconds_bucket\{(?:.*,)?le="([^"]+)"/.exec(line)?.[1];
    if (!le) continue;
    const step = /step="(\w+)"/.exec(line)![1]!;
    if (!out.has(step)) out.set(step, new Map());
    out.get(step)!.set(le, Number(line.split(' ').pop()));
  }
  return out;
}

await dvote(['down', '--volumes', '-q']).catch(() => undefined);
await dvote(['up', '--runtime', 'process', '-q']);
try {
  const st = JSON.parse((await dvote(['status', '--json'])).stdout) as {
    nodes: { name: string; role: string; endpoint: string }[];
    shards: { shard: number; primary: string }[];
  };
  const primary = st.shards.find((s) => s.shard === 1)!.primary;
  // The primary's PostgreSQL address, from the node spec the process runtime wrote.
  const spec = readFileSync(join(env.DVOTE_STATE_DIR, 'clusters', 'idle', 'nodes', primary, 'spec.json'), 'utf8');
  const pgPort = Number(/"pgAdvertise":\s*"[^"]*:(\d+)"/.exec(spec)?.[1]);
  if (!pgPort) throw new Error(`no pgAdvertise in ${primary}'s spec.json`);
  const managers = st.nodes.filter((n) => n.role === 'manager').map((n) => n.endpoint.replace('http://', ''));
  const svc = st.nodes.find((n) => n.name === 'shard-1-svc')!.endpoint;

  const db = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'dvote', database: 'dvote' });
  await db.connect();
  await db.query('CREATE TABLE idle_probe (id bigint PRIMARY KEY, v int)');
  for (const gap of [10, 0]) {
    const ms = await series((i) => db.query({ name: 'ins', text: 'INSERT INTO idle_probe VALUES ($1, 1) ON CONFLICT DO NOTHING', values: [gap * 1_000_000 + i] }), gap);
    console.log(`1. PostgreSQL one-row INSERT commit on ${primary}, ${gap ? `${gap} ms apart` : 'back to back'}: ${summary(ms)}`);
  }
  await db.query('DROP TABLE idle_probe');
  await db.end();

  const brokers = new BrokerClient({ managers });
  await brokers.createTopic('probe', { partitions: 1, replicationFactor: 3 });
  const value = new TextEncoder().encode('1234567890,1,1732200000000000,1,ab12cd34');
  for (const gap of [10, 0]) {
    const ms = await series(() => brokers.append('probe', 0, [value]), gap);
    console.log(`2. broker append, one message, RF 3, ${gap ? `${gap} ms apart` : 'back to back'}: ${summary(ms)}`);
  }
  await brokers.close();

  const before = await steps(svc);
  const b = JSON.parse((await dvote(['bench', '--duration', '10s', '--warmup', '2s', '--rate', '100', '--json'])).stdout) as {
    latencyMs: { p50: number; p90: number; p99: number };
    verify: { ok: boolean };
  };
  const after = await steps(svc);
  console.log(`3. dvote bench --rate 100 (whole path, 2 shards): p50 ${b.latencyMs.p50}  p90 ${b.latencyMs.p90}  p99 ${b.latencyMs.p99} ms, verify ${b.verify.ok ? 'ok' : 'FAILED'}`);
  for (const [step, a] of after) {
    const d = (k: string) => (a.get(k) ?? 0) - (before.get(step)?.get(k) ?? 0);
    const share = (le: string) => `${Math.round((d(le) / d('count')) * 100)} % under ${Number(le) * 1000} ms`;
    console.log(`   shard-1-svc step "${step}": ${d('count')} batches, mean ${((d('sum') / d('count')) * 1000).toFixed(2)} ms; ${['0.002', '0.005', '0.01'].map(share).join(', ')}`);
  }
} finally {
  await dvote(['down', '--volumes', '-q']).catch(() => undefined);
}
