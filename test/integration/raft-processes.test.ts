// The Raft managers as real processes (the bundled node program, fsync'd
// logs on disk, TCP between them) under SIGKILL of the leader:
// - no acknowledged write is lost and every member converges;
// - the bank-transfer check: money is neither made nor lost, and every read
//   of all balances sees one consistent total.
// Needs `npm run build` first (dist/services/node-main.js).
import { afterEach, describe, expect, it } from 'vitest';
import { ManagerClient, ManagerUnavailableError } from '../../src/client/manager-client.js';
import { checkBankInvariants, createBankModel, describeBankOperation, type BankOperation } from '../utils/bank-check.js';
import { LeaderNemesis, type LeaderNemesisOptions } from '../utils/leader-nemesis.js';
import { checkOperations } from '../utils/linearizability.js';
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
    // ManagerProcesses.stop() waits for an 'exit' event, which a process that already died never sends again.
    for (const m of cluster.members) if (m.child && (m.child.exitCode !== null || m.child.signalCode !== null)) m.child = null;
    await cluster.stop();
  }
  cluster = null;
});

function newClient(c: ManagerProcesses, endpoints = c.endpoints(), opts: { impatient?: boolean } = {}): ManagerClient {
  // Short attempts so a call moves on from a dead member quickly; the overall
  // limit bounds how long an unknown outcome can keep a client busy. An
  // impatient client gives up inside a failover while its request may still
  // be applied later: it produces unknown outcomes.
  const client = new ManagerClient(
    opts.impatient ? { endpoints, timeoutMs: 400, attemptTimeoutMs: 250 } : { endpoints, timeoutMs: 8_000, attemptTimeoutMs: 1_000 },
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

interface MemberHealth {
  id: string;
  state: string;
  leader: string | null;
  commitIndex: number;
  appliedIndex: number;
}

/** Every member up, agreeing on one leader, and every member has applied the leader's commit index. */
async function waitForConvergence(c: ManagerProcesses, timeoutMs: number): Promise<MemberHealth[]> {
  const deadline = performance.now() + timeoutMs;
  let last = 'no health yet';
  while (performance.now() < deadline) {
    const hs = (await Promise.all(c.members.map((m) => c.health(m)))) as unknown as (MemberHealth | null)[];
    const leader = hs.find((h) => h?.state === 'leader');
    if (hs.every((h) => h !== null) && leader) {
      const all = hs as MemberHealth[];
      const behind = all.filter((h) => h.leader !== leader.id || h.appliedIndex < leader.commitIndex);
      if (behind.length === 0) return all;
      last = behind.map((h) => `${h.id} leader=${h.leader} applied=${h.appliedIndex} < ${leader.commitIndex}`).join('; ');
    } else {
      last = hs.map((h, i) => `${c.members[i]!.id}: ${h ? `${h.state} leader=${h.leader}` : 'down'}`).join('; ');
    }
    await sleep(50);
  }
  const dead = c.members.filter((m) => m.child && m.child.exitCode !== null).map((m) => `${m.id} exited with ${m.child!.exitCode}`);
  throw new Error(`members did not converge within ${timeoutMs} ms: ${last}${dead.length ? `; ${dead.join(', ')}` : ''} (logs in ${c.baseDir})`);
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

function sameMap(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

/** Every key under `prefix` as one member holds it, read without a read barrier (no forwarding, no leader needed). */
async function staleSnapshot(m: ManagerProcess, prefix: string): Promise<Map<string, string>> {
  const res = await fetch(`http://${m.http}/v1/kv?prefix=${encodeURIComponent(prefix)}&stale=true`, { signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { items: { key: string; value: string }[]; servedBy: string };
  expect(body.servedBy).toBe(m.id);
  return new Map(body.items.map((i) => [i.key, i.value]));
}

describe('manager processes', () => {
  it('a follower forwards every kind of write to the leader', async () => {
    const c = (cluster = await ManagerProcesses.start({ size: 3 }));
    const leader = await c.waitForLeader(20_000);
    const follower = c.members.find((m) => m.id !== leader)!;
    // Straight to the follower, without the SDK: its failover would hide a follower that refuses.
    const send = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`http://${follower.http}${path}`, {
        method,
        ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(10_000),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await send('PUT', '/v1/kv/fwd/a', { value: '1' })).toMatchObject({ status: 200 });
    expect(await send('POST', '/v1/cas/fwd/a', { expected: '1', value: '2' })).toMatchObject({ status: 200, body: { ok: true } });
    expect(await send('POST', '/v1/cas/fwd/a', { expected: '1', value: '3' })).toMatchObject({ status: 409, body: { ok: false, current: '2' } });
    expect(await send('POST', '/v1/txn', { compare: [{ key: 'fwd/a', value: '2' }], success: [{ op: 'put', key: 'fwd/b', value: 'x' }], read: ['fwd/b'] })).toMatchObject({
      status: 200,
      body: { succeeded: true, values: { 'fwd/b': 'x' } },
    });
    // A DELETE has no body; the forwarded request must not claim a JSON one.
    expect(await send('DELETE', '/v1/kv/fwd/a')).toMatchObject({ status: 200, body: { deleted: true } });
    expect(await send('GET', '/v1/kv/fwd/a')).toMatchObject({ status: 404 });
  }, 60_000);
});

describe('manager processes under SIGKILL of the leader', () => {
  it('loses no acknowledged write, and every member converges to the same state', async () => {
    const c = (cluster = await ManagerProcesses.start({ size: 3 }));
    const nemesis = startNemesis(c, { upMs: [1_500, 2_500], downMs: 1_000 });
    const acknowledged = new Map<string, string>();
    const unknown = new Map<string, string>();
    const writers = 5;
    await runClientLoops(writers, 22_000, async (w, running) => {
      const client = newClient(c, c.endpoints(), { impatient: w === writers - 1 });
      for (let n = 0; running(); n++) {
        const key = `acked/${w}/${n}`;
        const value = `w${w}-n${n}-${Math.random().toString(36).slice(2, 10)}`;
        try {
          await client.put(key, value);
          acknowledged.set(key, value);
        } catch (e) {
          if (!(e instanceof ManagerUnavailableError)) throw e;
          unknown.set(key, value);
        }
      }
    });
    await nemesis.stop();
    const context = `${acknowledged.size} acknowledged, ${unknown.size} unknown; nemesis: ${nemesis.describe()}`;
    console.info(`no-lost-writes: ${context}`);
    expect(nemesis.kills, context).toBeGreaterThanOrEqual(4);
    expect(acknowledged.size, context).toBeGreaterThan(200);

    // With every member up again: one linearizable read of the whole prefix...
    await c.waitForLeader(20_000);
    const reader = newClient(c);
    const items = await reader.list('acked/');
    const stored = new Map(items.map((i) => [i.key, i.value]));
    const lost = [...acknowledged].filter(([k, v]) => stored.get(k) !== v);
    expect(lost.slice(0, 10), `lost acknowledged writes (${lost.length}); ${context}`).toEqual([]);
    // ...nothing that was never written...
    const invented = [...stored].filter(([k, v]) => acknowledged.get(k) !== v && unknown.get(k) !== v);
    expect(invented.slice(0, 10), `values nobody wrote; ${context}`).toEqual([]);
    // ...and single-key linearizable reads agree (a sample: each is a ReadIndex round).
    const sample = [...acknowledged].filter((_, i) => i % Math.ceil(acknowledged.size / 100) === 0);
    for (const [k, v] of sample) expect((await reader.get(k))?.value, k).toBe(v);

    // Convergence: once every member has applied the leader's commit index,
    // each one's own (stale) copy is the same. A write an impatient client
    // gave up on may still be applied after the read above, so the copies
    // are compared with each other (again, if one moved in between), and
    // with that read except for unknown-outcome keys.
    let copies: Map<string, string>[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      await waitForConvergence(c, 20_000);
      copies = await Promise.all(c.members.map((m) => staleSnapshot(m, 'acked/')));
      if (copies.every((copy) => sameMap(copy, copies[0]!))) break;
    }
    const withoutUnknown = (m: Map<string, string>) => new Map([...m].filter(([k]) => !unknown.has(k)));
    for (const [i, copy] of copies.entries()) {
      const id = c.members[i]!.id;
      expect(copy, `${id} copy differs from ${c.members[0]!.id}'s`).toEqual(copies[0]);
      expect(withoutUnknown(copy), `${id} copy`).toEqual(withoutUnknown(stored));
    }
    // A few single-key stale GETs on each member, the path a follower serves reads by.
    for (const m of c.members) {
      const member = newClient(c, [m.http]);
      for (const [k, v] of sample.slice(0, 20)) expect((await member.get(k, { stale: true }))?.value, `${m.id} ${k}`).toBe(v);
    }
  }, 110_000);

  it('bank transfers through optimistic transactions neither make nor lose money', async () => {
    const c = (cluster = await ManagerProcesses.start({ size: 3 }));
    const accounts = ['bank/acct1', 'bank/acct2', 'bank/acct3', 'bank/acct4'];
    const initialBalances = Object.fromEntries(accounts.map((a) => [a, 100]));
    const admin = newClient(c);
    const opened = await admin.txn({
      compare: [{ key: 'bank/opened', value: null }],
      success: [...accounts.map((key) => ({ op: 'put' as const, key, value: '100' })), { op: 'put', key: 'bank/opened', value: 'yes' }],
    });
    expect(opened.succeeded).toBe(true);

    const history: BankOperation[] = [];
    const stats = { reads: 0, transfers: 0, insufficient: 0, conflicts: 0, unknown: 0, gaveUp: 0 };
    const nemesis = startNemesis(c, { upMs: [4_000, 5_000], downMs: 1_000, maxKills: 2 });
    const now = () => performance.now();

    /** One transfer as the simulator's bank client does it: read both balances, then a txn that compares both. */
    const transfer = async (client: ManagerClient, id: number): Promise<void> => {
      const from = accounts[Math.floor(Math.random() * accounts.length)]!;
      const to = accounts.filter((a) => a !== from)[Math.floor(Math.random() * (accounts.length - 1))]!;
      const amount = 1 + Math.floor(Math.random() * 60);
      const op: BankOperation = { input: { type: 'transfer', from, to, amount }, call: now(), return: Infinity, clientId: id };
      for (let attempt = 0; attempt < 5; attempt++) {
        let values: Record<string, string | null>;
        try {
          const r = await client.txn({ compare: [], success: [], read: [from, to] });
          values = r.values ?? {};
        } catch (e) {
          if (!(e instanceof ManagerUnavailableError)) throw e;
          return; // the read changed nothing, and nothing was written yet
        }
        const vf = values[from] ?? null;
        const vt = values[to] ?? null;
        if (vf === null || vt === null) throw new Error(`account missing: ${from}=${vf} ${to}=${vt}`);
        if (Number(vf) < amount) {
          op.output = { type: 'transfer', result: 'insufficient' };
          op.return = now();
          history.push(op);
          stats.insufficient++;
          return;
        }
        try {
          const w = await client.txn({
            compare: [
              { key: from, value: vf },
              { key: to, value: vt },
            ],
            success: [
              { op: 'put', key: from, value: String(Number(vf) - amount) },
              { op: 'put', key: to, value: String(Number(vt) + amount) },
            ],
          });
          if (w.succeeded) {
            op.output = { type: 'transfer', result: 'ok' };
            op.return = now();
            history.push(op);
            stats.transfers++;
            return;
          }
          stats.conflicts++; // someone moved money in between: certainly not applied, so try again
        } catch (e) {
          if (!(e instanceof ManagerUnavailableError)) throw e;
          history.push(op); // may or may not have happened: return stays +Infinity
          stats.unknown++;
          return;
        }
      }
      stats.gaveUp++;
    };

    const readAll = async (client: ManagerClient, id: number): Promise<void> => {
      const call = now();
      try {
        const r = await client.txn({ compare: [], success: [], read: accounts });
        const balances = Object.fromEntries(accounts.map((a) => [a, Number(r.values?.[a])]));
        history.push({ input: { type: 'read' }, output: { type: 'read', balances }, call, return: now(), clientId: id });
        stats.reads++;
      } catch (e) {
        if (!(e instanceof ManagerUnavailableError)) throw e;
      }
    };

    await runClientLoops(5, 15_000, async (id, running) => {
      const client = newClient(c, c.endpoints(), { impatient: id === 4 });
      while (running()) {
        if (Math.random() < 0.35) await readAll(client, id);
        else await transfer(client, id);
      }
    });
    await nemesis.stop();
    await c.waitForLeader(20_000);
    await readAll(admin, -1);

    const context = `${JSON.stringify(stats)}; nemesis: ${nemesis.describe()}`;
    console.info(`bank: ${context}`);
    expect(nemesis.kills, context).toBe(2);
    expect(stats.reads, context).toBeGreaterThan(30);
    expect(stats.transfers, context).toBeGreaterThan(30);

    const report = checkBankInvariants(history, { initialBalances });
    const shown = report.violations.slice(0, 5).map((v) => `${describeBankOperation(v.operation.input, v.operation.output)}: ${v.problem}`);
    expect(shown, context).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.readsChecked).toBe(stats.reads);

    // The full linearizability check of the same history (it cannot be
    // split by key, so it is bounded in time; only a definite violation fails).
    const lin = checkOperations(createBankModel({ initialBalances }), history, { timeoutMs: 20_000 });
    if (lin.result === 'illegal') throw new Error(`bank history is not linearizable:\n${lin.explanation.text}`);
    console.info(`bank: linearizability check ${lin.result} in ${Math.round(lin.elapsedMs)} ms over ${lin.operations} operations`);
  }, 110_000);
});
