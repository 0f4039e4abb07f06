// Linearizability of the managers' key-value API, checked on histories taken
// from real processes (the bundled node program, real disks, TCP) while the
// leader is SIGKILLed and restarted. The clients are the SDK, so its failover
// and idempotent retries are part of what is checked.
//
// The second test shows the checker is not blind on real processes: reads
// with ?stale=true from a follower that was kept behind (SIGSTOP) are
// reported as not linearizable, while linearizable reads from the same
// follower in the same situation pass.
// Needs `npm run build` first (dist/services/node-main.js).
import { afterEach, describe, expect, it } from 'vitest';
import { ManagerClient } from '../../src/client/manager-client.js';
import { KvHistory, RecordingKvClient } from '../utils/kv-history-recorder.js';
import { kvModel, type KvInput, type KvOutput } from '../utils/kv-model.js';
import { LeaderNemesis, type LeaderNemesisOptions } from '../utils/leader-nemesis.js';
import { checkOperations, type CheckResult } from '../utils/linearizability.js';
import { ManagerProcesses, type ManagerProcess } from '../utils/manager-processes.js';

let cluster: ManagerProcesses | null = null;
let activeNemesis: LeaderNemesis | null = null;
const clients: ManagerClient[] = [];

afterEach(async () => {
  // A test that failed half-way leaves its nemesis running: it must not restart members of a cluster being stopped.
  await activeNemesis?.stop({ restartDown: false });
  activeNemesis = null;
  await Promise.all(clients.splice(0).map((c) => c.close()));
  if (cluster) {
    for (const m of cluster.members) {
      // A SIGSTOPped process must run again to die of SIGKILL cleanly; one that already died never sends 'exit' again.
      m.child?.kill('SIGCONT');
      if (m.child && (m.child.exitCode !== null || m.child.signalCode !== null)) m.child = null;
    }
    await cluster.stop();
  }
  cluster = null;
});

/**
 * An impatient client gives up on a call after 400 ms, well inside a
 * failover, while its request may still be on its way to being applied: it
 * produces the unknown outcomes the checker has to place.
 */
function newClient(endpoints: string[], opts: { impatient?: boolean } = {}): ManagerClient {
  const client = new ManagerClient(
    opts.impatient ? { endpoints, timeoutMs: 400, attemptTimeoutMs: 250 } : { endpoints, timeoutMs: 5_000, attemptTimeoutMs: 1_000 },
  );
  clients.push(client);
  return client;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function startNemesis(c: ManagerProcesses, opts: LeaderNemesisOptions): LeaderNemesis {
  const n = (activeNemesis = new LeaderNemesis(c, opts));
  n.start();
  return n;
}

/**
 * Runs `count` client loops for `runMs`. The first loop that throws stops
 * the others (they finish the call in hand), and its error is rethrown once
 * all have ended, so no loop outlives its test.
 */
async function runClientLoops(count: number, runMs: number, loop: (id: number, running: () => boolean) => Promise<void>): Promise<void> {
  const end = performance.now() + runMs;
  let failed = false;
  const running = () => !failed && performance.now() < end;
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, id) =>
      loop(id, running).catch((e: unknown) => {
        failed = true;
        throw e;
      }),
    ),
  );
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

function verdict(r: CheckResult<KvInput, KvOutput>): string {
  if (r.result === 'illegal') return `illegal:\n${r.explanation.text}`;
  if (r.result === 'unknown') return `unknown: ${r.reason}`;
  return 'ok';
}

describe('linearizability of manager processes', () => {
  it('random get/put/cas/delete from 5 SDK clients stay linearizable while the leader is SIGKILLed', async () => {
    const c = (cluster = await ManagerProcesses.start({ size: 3 }));
    const history = new KvHistory();
    const keys = ['lin/a', 'lin/b', 'lin/c'];
    const nemesis = startNemesis(c, { upMs: [1_500, 2_500], downMs: 1_000 });
    await runClientLoops(5, 16_000, async (id, running) => {
      // Each client starts at a different member, so reads and writes also go through followers (ReadIndex, forwarding).
      const endpoints = c.endpoints();
      const rotated = [...endpoints.slice(id % endpoints.length), ...endpoints.slice(0, id % endpoints.length)];
      const kv = new RecordingKvClient(newClient(rotated, { impatient: id === 4 }), history, id);
      // What this client last saw of each key: a CAS expecting it succeeds often enough to matter.
      const seen = new Map<string, string | null>();
      for (let n = 0; running(); n++) {
        const key = keys[Math.floor(Math.random() * keys.length)]!;
        const value = `c${id}-${n}`;
        const dice = Math.random();
        if (dice < 0.4) {
          const v = await kv.get(key);
          if (v !== undefined) seen.set(key, v);
        } else if (dice < 0.65) {
          if (await kv.put(key, value)) seen.set(key, value);
        } else if (dice < 0.85) {
          const r = await kv.cas(key, seen.get(key) ?? null, value);
          if (r?.ok) seen.set(key, value);
          else if (r && r.current !== undefined) seen.set(key, r.current);
        } else if ((await kv.delete(key)) !== undefined) {
          seen.set(key, null);
        }
      }
    });
    await nemesis.stop();
    // The final state, read linearizably with every member up, is part of the history.
    await c.waitForLeader(20_000);
    const final = new RecordingKvClient(newClient(c.endpoints()), history, 'final');
    for (const key of keys) expect(await final.get(key)).not.toBe(undefined);

    const ops = history.operations();
    const byType = countBy(ops, (o) => o.input.type);
    const context = `${ops.length} operations ${JSON.stringify(byType)}, ${JSON.stringify(history.counts)}; nemesis: ${nemesis.describe()}`;
    console.info(`linearizability: ${context}`);
    expect(nemesis.kills, context).toBeGreaterThanOrEqual(3);
    expect(history.counts.completed, context).toBeGreaterThan(300);
    expect(byType.cas ?? 0, context).toBeGreaterThan(30);

    const result = checkOperations(kvModel, ops, { timeoutMs: 30_000 });
    console.info(`linearizability: ${result.result} in ${Math.round(result.elapsedMs)} ms, ${result.partitions} partitions`);
    expect(verdict(result), context).toBe('ok');
  }, 110_000);

  it('catches stale reads from a follower kept behind, and passes linearizable reads from it', async () => {
    const c = (cluster = await ManagerProcesses.start({ size: 3 }));
    const leaderId = await c.waitForLeader(20_000);
    const leader = c.member(leaderId);
    const follower = c.members.find((m) => m.id !== leaderId)!;
    const writer = newClient([leader.http]);
    const staleHistory = new KvHistory();
    const linearHistory = new KvHistory();
    const staleReader = new RecordingKvClient(newClient([follower.http]), staleHistory, 'stale-reader', { stale: true });
    const linearReader = new RecordingKvClient(newClient([follower.http]), linearHistory, 'linear-reader');
    const staleWriter = new RecordingKvClient(writer, staleHistory, 'writer');
    const linearWriter = new RecordingKvClient(writer, linearHistory, 'writer');
    const rounds = 5;
    const staleValues: string[] = [];

    for (let round = 0; round < rounds; round++) {
      // Stale path: the follower is frozen while a write commits without it,
      // and a stale read sent to it is answered the moment it wakes up, before
      // it could apply (and fsync) the entries that wait in its socket.
      const key = `stale/${round}`;
      expect(await staleWriter.put(key, 'before')).toBe(true);
      await waitForStale(follower, key, 'before');
      const read = await whileFrozen(follower, async () => {
        expect(await staleWriter.put(key, 'after')).toBe(true);
      }, () => staleReader.get(key));
      if (read === 'before') staleValues.push(key);
      else expect(read).toBe('after');

      // Linearizable path, same situation: the read waits for the follower to catch up.
      const lkey = `linear/${round}`;
      expect(await linearWriter.put(lkey, 'before')).toBe(true);
      await waitForStale(follower, lkey, 'before');
      const lread = await whileFrozen(follower, async () => {
        expect(await linearWriter.put(lkey, 'after')).toBe(true);
      }, () => linearReader.get(lkey));
      expect(lread, `linearizable read of ${lkey} from the follower`).toBe('after');
    }

    const linear = checkOperations(kvModel, linearHistory.operations(), { timeoutMs: 10_000 });
    expect(verdict(linear)).toBe('ok');
    const stale = checkOperations(kvModel, staleHistory.operations(), { timeoutMs: 10_000 });
    console.info(`stale reads: ${staleValues.length} of ${rounds} rounds read the old value; checker says ${stale.result}`);
    // Whether the follower answers before it applies is up to its event loop;
    // in practice it always does (the apply waits for an fsync). The checker's
    // verdict must match what was read in every case.
    expect(stale.result).toBe(staleValues.length > 0 ? 'illegal' : 'ok');
    expect(staleValues.length, 'no round produced a stale read: the demonstration did not happen').toBeGreaterThan(0);
    if (stale.result === 'illegal') expect(stale.explanation.partition).toContain('stale/');
  }, 60_000);
});

/** Waits until the member's own copy holds `value` (so it is not behind before the round starts). */
async function waitForStale(m: ManagerProcess, key: string, value: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const res = await fetch(`http://${m.http}/v1/kv/${key}?stale=true`, { signal: AbortSignal.timeout(1_000) });
    if (res.status === 200 && ((await res.json()) as { value: string }).value === value) return;
    await sleep(10);
  }
  throw new Error(`${m.id} did not apply ${key}=${value} within 10 s`);
}

/**
 * SIGSTOPs `m`, runs `meanwhile` (which must not need `m`), sends `read` to
 * the frozen member, gives the request time to reach its socket, SIGCONTs it
 * and returns what the read returned.
 */
async function whileFrozen<T>(m: ManagerProcess, meanwhile: () => Promise<void>, read: () => Promise<T>): Promise<T> {
  const child = m.child;
  if (!child) throw new Error(`${m.id} is not running`);
  child.kill('SIGSTOP');
  try {
    await meanwhile();
    const pending = read();
    await sleep(100);
    child.kill('SIGCONT');
    return await pending;
  } finally {
    child.kill('SIGCONT');
  }
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}
