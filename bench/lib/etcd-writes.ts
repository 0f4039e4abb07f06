// A replicated peer for the vote targets: etcd, three members on 127.0.0.1
// (etcd-cluster.ts, the settings of the shared PEERS.md), taking one write
// per HTTP request, the way dvote takes one vote per request. Each write is a
// PUT of a new key with a vote-sized value through etcd's JSON gateway
// (POST /v3/kv/put), sent to the leader, and acknowledged by etcd only once
// it is committed on a majority and fsynced there.
//
// The load is driven by dvote bench's own load generator (runLoad: closed
// loop, and open loop with latency from the intended send time) and client
// call (jsonCall on an undici Agent with one kept-alive connection per
// request in flight), so the client side costs what it costs dvote's.
//
// It stores each write once per member in a key-value store, with no SQL, no
// shard service and no second hop: less work per write than a dvote vote.
// What it reaches on these cores says what a mature replicated system
// reaches here, one write per request.
import { Agent } from 'undici';
import { jsonCall } from '../../src/client/http-call.js';
import { runLoad, type LoadMode, type LoadResult, type OpOutcome } from '../../src/bench/load-generator.js';
import { EtcdCluster } from './etcd-cluster.js';

export interface EtcdCase {
  name: string;
  mode: LoadMode;
  writesPerSec: number;
  latencyMs: LoadResult['latency'];
  failed: number;
  errorsByKind: Record<string, number>;
  generator: LoadResult['generator'];
}

export interface EtcdWritesResult {
  version: string;
  members: number;
  cases: EtcdCase[];
  /** Closed-loop peak, one write per request (the higher of those cases), writes/s. */
  peak: number;
  /** Writes/s with `batch` writes per request. */
  batched: number;
  /** Keys etcd holds at the end (count-only range), against the writes it acknowledged (warm-ups included). */
  keysStored: number;
  acknowledged: number;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** About the size of a vote in the vote log (voter, choice, time, epoch, writer). */
const VALUE = b64(JSON.stringify({ choice: 3, castAtUs: 1763793000000000, epoch: 1, writer: 'ab12cd34' }));

export async function measureEtcdWrites(o: {
  concurrency: number[];
  /** Open-loop cases as shares of the closed-loop peak (e.g. 0.8, 0.5). */
  openShares: number[];
  /** The batched case: this many PUTs per transaction (etcd's default limit is 128), at batchConcurrency in flight. */
  batch: number;
  batchConcurrency: number;
  seconds: number;
  warmupSeconds: number;
  onCase?: (c: EtcdCase) => void;
}): Promise<EtcdWritesResult> {
  const cluster = await EtcdCluster.start({ size: 3 });
  const agent = new Agent({ connections: Math.max(...o.concurrency, 256), keepAliveTimeout: 30_000, pipelining: 1 });
  try {
    const leader = await cluster.waitForLeader(30_000);
    const origin = leader.clientUrl;
    let key = 0;
    let acknowledged = 0;
    const op = async (): Promise<OpOutcome> => {
      const k = key++;
      const r = await jsonCall(agent, { origin, path: '/v3/kv/put', method: 'POST', body: { key: b64(`vote/${k}`), value: VALUE }, timeoutMs: 10_000 });
      if (r.status !== 200 || typeof r.body !== 'object' || r.body === null || !('header' in r.body)) {
        return { ok: false, kind: `HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 60)}` };
      }
      acknowledged++;
      return { ok: true };
    };
    // The batched variant: `batch` PUTs of new keys in one transaction (one request, one Raft entry).
    const batchOp = async (): Promise<OpOutcome> => {
      const success = Array.from({ length: o.batch }, () => ({ request_put: { key: b64(`vote/${key++}`), value: VALUE } }));
      const r = await jsonCall(agent, { origin, path: '/v3/kv/txn', method: 'POST', body: { success }, timeoutMs: 10_000 });
      if (r.status !== 200 || r.body.succeeded !== true) return { ok: false, kind: `HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 60)}`, units: o.batch };
      acknowledged += o.batch;
      return { ok: true, units: o.batch };
    };
    const run = async (name: string, mode: LoadMode, f = op): Promise<EtcdCase> => {
      await runLoad({ mode, durationMs: o.warmupSeconds * 1000, op: f });
      const r = await runLoad({ mode, durationMs: o.seconds * 1000, op: f });
      const c: EtcdCase = {
        name,
        mode,
        writesPerSec: Math.round((r.okUnits / (r.elapsedMs / 1000)) * 10) / 10,
        latencyMs: r.latency,
        failed: r.failed,
        errorsByKind: r.errorsByKind,
        generator: r.generator,
      };
      o.onCase?.(c);
      return c;
    };
    const cases: EtcdCase[] = [];
    for (const c of o.concurrency) cases.push(await run(`${c} in flight`, { kind: 'closed', concurrency: c }));
    const peak = Math.max(...cases.map((c) => c.writesPerSec));
    for (const share of o.openShares) {
      const rate = Math.floor(peak * share);
      cases.push(await run(`open loop at ${Math.round(share * 100)}% of peak (${rate} req/s)`, { kind: 'open', rate, maxInFlight: 10_000 }));
    }
    const batched = await run(`${o.batch} writes per request (one txn), ${o.batchConcurrency} in flight`, { kind: 'closed', concurrency: o.batchConcurrency }, batchOp);
    cases.push(batched);
    const count = await jsonCall(agent, {
      origin,
      path: '/v3/kv/range',
      method: 'POST',
      body: { key: b64('vote/'), range_end: b64('vote0'), count_only: true },
      timeoutMs: 30_000,
    });
    const keysStored = Number((count.body as { count?: string }).count ?? 0);
    const version = (await jsonCall(agent, { origin, path: '/version', method: 'GET', timeoutMs: 5_000 }).then((r) => (r.body as { etcdserver?: string }).etcdserver)) ?? 'unknown';
    return { version, members: cluster.members.length, cases, peak, batched: batched.writesPerSec, keysStored, acknowledged };
  } finally {
    await agent.close().catch(() => undefined);
    await cluster.stop();
  }
}
