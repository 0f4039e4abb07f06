// ProcessRuntime with real processes: three Raft managers run as detached
// local processes under their supervisors, and the test breaks them the way
// `dvote kill` / `--pause` / a crash would.
//
// The node program is bundled from the current sources into the test's own
// temporary folder (the same esbuild options as scripts/build.mjs), so the
// test neither depends on nor races with `npm run build` in the checkout.
import { spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DvoteError } from '../../src/core/errors.js';
import { LABEL } from '../../src/runtime/labels.js';
import { procGroup, procState } from '../../src/runtime/process-node-dir.js';
import { BACKOFF, nextBackoffMs } from '../../src/runtime/process-supervisor.js';
import { ProcessRuntime } from '../../src/runtime/process.js';
import type { NodeSpec, ObservedNode } from '../../src/runtime/runtime.js';
import { sleep, waitFor } from '../../src/runtime/wait.js';
import type { ManagerPeer } from '../../src/services/common/node-config.js';
import { freePort } from '../utils/manager-processes.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLUSTER = 'prt';
const WORK = mkdtempSync(join(tmpdir(), 'dvote-process-runtime-'));
const STATE = join(WORK, 'state');
const PROGRAM = join(WORK, 'bundle', 'node-main.js');

let rt: ProcessRuntime;
let specs: NodeSpec[] = [];
/** Every supervisor and node pid seen, to prove at the end that none is left. */
const seenPids = new Set<number>();

interface Health {
  id: string;
  state: string;
  leader: string | null;
  term: number;
}

async function health(n: ObservedNode | NodeSpec, timeoutMs = 500): Promise<Health | null> {
  const url = 'endpoint' in n ? n.endpoint : `http://127.0.0.1:${n.ports.http}`;
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    return (await res.json()) as Health;
  } catch {
    return null;
  }
}

async function nodes(): Promise<Map<string, ObservedNode>> {
  const list = await rt.listNodes(CLUSTER);
  for (const n of list) if (n.runtimeId) seenPids.add(Number(n.runtimeId));
  for (const n of list) {
    const sup = supervisorPid(n.name);
    if (sup) seenPids.add(sup);
  }
  return new Map(list.map((n) => [n.name, n]));
}

async function node(name: string): Promise<ObservedNode> {
  const n = (await nodes()).get(name);
  if (!n) throw new Error(`${name} is not listed`);
  return n;
}

/** The supervisor's pid file is gone once it has left (after a kill or stop). */
function supervisorPid(name: string): number | null {
  try {
    return Number(readFileSync(join(STATE, 'clusters', CLUSTER, 'nodes', name, 'supervisor.pid'), 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

function spec(name: string): NodeSpec {
  const s = specs.find((x) => x.name === name);
  if (!s) throw new Error(`no spec ${name}`);
  return s;
}

/** The leader a live member reports as itself, other than `not`. */
async function waitForLeader(among: string[], not?: string): Promise<string> {
  const r = await waitFor(
    `a leader among ${among.join(', ')}${not ? ` other than ${not}` : ''}`,
    async () => {
      const hs = await Promise.all(among.map((n) => health(spec(n))));
      const leader = hs.find((h) => h?.state === 'leader' && h.id !== not);
      return leader ? { done: true, value: leader.id } : { done: false, reason: JSON.stringify(hs.map((h) => h?.state ?? null)) };
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  );
  return r.value;
}

async function waitForState(name: string, state: ObservedNode['state'], extra?: (n: ObservedNode) => boolean): Promise<ObservedNode> {
  const r = await waitFor(
    `${name} to be ${state}`,
    async () => {
      const n = await node(name);
      return n.state === state && (!extra || extra(n)) ? { done: true, value: n } : { done: false, reason: `${n.state} pid ${n.runtimeId}` };
    },
    { timeoutMs: 15_000, intervalMs: 50 },
  );
  return r.value;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const s = procState(pid);
  return s !== 'Z' && s !== 'X';
}

/** Processes whose command line mentions our temporary folder (there must be none at the end). */
function processesUsing(path: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(path) && alive(Number(e))) found.push(Number(e));
    } catch {
      // Gone while we looked.
    }
  }
  return found;
}

async function buildSpecs(): Promise<NodeSpec[]> {
  const a = rt.addressing(CLUSTER);
  const names = ['manager-1', 'manager-2', 'manager-3'];
  const ports: { http: number; raft: number }[] = [];
  for (const _ of names) ports.push({ http: await freePort(), raft: await freePort() });
  const managers: ManagerPeer[] = names.map((id, i) => ({
    id,
    http: a.internal(id, 'http', ports[i]!.http),
    raft: a.internal(id, 'raft', ports[i]!.raft),
  }));
  return names.map((name, i) => {
    const p = ports[i]!;
    const http = a.listen(name, 'http', p.http);
    return {
      cluster: CLUSTER,
      name,
      role: 'manager',
      labels: { 'io.dvote.test': 'process-runtime' },
      ports: p,
      config: {
        cluster: CLUSTER,
        id: name,
        role: 'manager',
        dataDir: a.dataDir(name),
        listen: { host: http.host, httpPort: http.port, raftPort: a.listen(name, 'raft', p.raft).port },
        advertise: { http: managers[i]!.http, raft: managers[i]!.raft },
        managers,
        bootstrap: true,
        logLevel: 'info',
      },
    } satisfies NodeSpec;
  });
}

beforeAll(async () => {
  await build({
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
    bundle: true,
    entryPoints: [join(ROOT, 'src/services/node-main.ts')],
    outfile: PROGRAM,
    banner: {
      js: "import { createRequire as __dvoteCreateRequire } from 'node:module'; const require = __dvoteCreateRequire(import.meta.url);",
    },
    external: ['pg-native', 'cpu-features', 'ssh2'],
  });
  process.env.DVOTE_STATE_DIR = STATE;
  rt = new ProcessRuntime({ nodeProgram: PROGRAM });
  specs = await buildSpecs();
}, 60_000);

afterAll(async () => {
  try {
    await rt?.removeCluster(CLUSTER, { volumes: true });
  } finally {
    // Last resort, so a failed test does not leave processes behind.
    for (const pid of processesUsing(WORK)) process.kill(pid, 'SIGKILL');
    delete process.env.DVOTE_STATE_DIR;
    rmSync(WORK, { recursive: true, force: true });
  }
}, 60_000);

describe('supervisor backoff', () => {
  it('doubles from 100 ms to 5 s and starts over after a run of 10 s', () => {
    const seq: number[] = [];
    let b: number | null = null;
    for (let i = 0; i < 8; i++) seq.push((b = nextBackoffMs(b, 50)));
    expect(seq).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    expect(nextBackoffMs(5000, BACKOFF.resetAfterMs)).toBe(100);
    expect(nextBackoffMs(400, BACKOFF.resetAfterMs - 1)).toBe(800);
  });
});

describe('ProcessRuntime with real processes', () => {
  it('uses $DVOTE_STATE_DIR and checks for the node program and PostgreSQL', async () => {
    expect(rt.stateDir).toBe(resolve(STATE));
    const info = await rt.check();
    expect(info.kind).toBe('process');
    expect(info.description).toContain(STATE);
    const pg = rt.postgresBinDir();
    if (pg) {
      expect(existsSync(join(pg, 'postgres')) && existsSync(join(pg, 'initdb'))).toBe(true);
      expect(info.description).toMatch(/PostgreSQL \d+/);
    } else {
      expect(info.description).toContain('no PostgreSQL binaries');
    }
    const missing = new ProcessRuntime({ nodeProgram: join(WORK, 'nope', 'node-main.js') });
    await expect(missing.check()).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE', hint: 'run npm run build' });
  });

  it('starts three managers that outlive the process that started them and elect a leader', async () => {
    await rt.prepareCluster(CLUSTER);
    expect(existsSync(join(STATE, 'clusters', CLUSTER, 'nodes'))).toBe(true);
    // A separate process starts the nodes and exits, as `dvote up` does.
    const starter = join(WORK, 'starter.mts');
    writeFileSync(
      starter,
      [
        `import { ProcessRuntime } from ${JSON.stringify(join(ROOT, 'src/runtime/process.ts'))};`,
        `const rt = new ProcessRuntime({ nodeProgram: ${JSON.stringify(PROGRAM)} });`,
        `for (const s of JSON.parse(process.env.SPECS)) await rt.start(s);`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', starter], {
      cwd: ROOT,
      env: { ...process.env, SPECS: JSON.stringify(specs) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code, stderr).toBe(0);

    const listed = await nodes();
    expect([...listed.keys()]).toEqual(['manager-1', 'manager-2', 'manager-3']);
    for (const n of listed.values()) {
      expect(n.state).toBe('running');
      const pid = Number(n.runtimeId);
      expect(alive(pid)).toBe(true);
      // Own process group (the supervisor's), not the test's nor the starter's.
      const sup = supervisorPid(n.name) ?? -1;
      expect(procGroup(pid)).toBe(sup);
      expect(procGroup(sup)).toBe(sup);
      expect(procGroup(sup)).not.toBe(procGroup(process.pid));
    }
    await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
  }, 60_000);

  it('lists nodes from the state folder', async () => {
    const n = await node('manager-2');
    const s = spec('manager-2');
    expect(n).toMatchObject({
      cluster: CLUSTER,
      name: 'manager-2',
      role: 'manager',
      state: 'running',
      disconnected: false,
      endpoint: `http://127.0.0.1:${s.ports.http}`,
      directEndpoint: `http://127.0.0.1:${s.ports.http}`,
      ports: s.ports,
      restartCount: 0,
    });
    expect(n.pgAddress).toBeUndefined();
    expect(n.labels).toMatchObject({
      [LABEL.managed]: 'true',
      [LABEL.cluster]: CLUSTER,
      [LABEL.node]: 'manager-2',
      [LABEL.role]: 'manager',
      'io.dvote.test': 'process-runtime',
    });
    expect(Date.now() - Date.parse(n.startedAt ?? '')).toBeLessThan(120_000);
    expect(rt.addressing(CLUSTER).dataDir('manager-2')).toBe(join(STATE, 'clusters', CLUSTER, 'nodes', 'manager-2', 'data'));
    expect(existsSync(rt.addressing(CLUSTER).dataDir('manager-2'))).toBe(true);
    expect(await rt.listClusters()).toContain(CLUSTER);
    expect((await rt.listNodes()).filter((x) => x.cluster === CLUSTER)).toHaveLength(3);
  });

  it('start with the same spec is a no-op; a changed spec recreates the node and keeps its data', async () => {
    const before = await nodes();
    for (const s of specs) await rt.start(s);
    const after = await nodes();
    for (const [name, n] of before) expect(after.get(name)?.runtimeId).toBe(n.runtimeId);

    const leader = await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
    const follower = specs.find((s) => s.name !== leader)!;
    const sentinel = join(rt.addressing(CLUSTER).dataDir(follower.name), 'sentinel');
    writeFileSync(sentinel, 'kept');
    const changed: NodeSpec = { ...follower, config: { ...follower.config, logLevel: 'warn' } };
    const o = await rt.start(changed);
    expect(readFileSync(sentinel, 'utf8')).toBe('kept');
    expect(JSON.parse(readFileSync(join(STATE, 'clusters', CLUSTER, 'nodes', follower.name, 'spec.json'), 'utf8')).spec.config.logLevel).toBe('warn');
    expect(o.runtimeId).not.toBe(before.get(follower.name)?.runtimeId);
    specs = specs.map((s) => (s.name === follower.name ? changed : s));
    const h = await waitFor(
      `${follower.name} to rejoin`,
      async () => {
        const x = await health(changed);
        return x?.leader ? { done: true, value: x } : { done: false, reason: JSON.stringify(x) };
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    expect(h.value.leader).toBeTruthy();
  }, 40_000);

  it('staleNodes names the nodes started by another node program (by its contents)', async () => {
    expect(await rt.staleNodes(CLUSTER)).toEqual([]);
    // Another build: the same program with one more line.
    const next = join(WORK, 'next', 'node-main.js');
    mkdirSync(dirname(next), { recursive: true });
    writeFileSync(next, `${readFileSync(PROGRAM, 'utf8')}\n// next build\n`);
    const rtNext = new ProcessRuntime({ nodeProgram: next });
    const names = specs.map((s) => s.name).sort();
    expect((await rtNext.staleNodes(CLUSTER)).sort()).toEqual(names);
    // The same contents under a new mtime are the same build.
    writeFileSync(next, readFileSync(PROGRAM));
    expect(await rtNext.staleNodes(CLUSTER)).toEqual([]);
    expect(await rt.staleNodes('no-such-cluster')).toEqual([]);
  }, 30_000);

  it('restarts a crashed node (killed without the marker) and counts the restart', async () => {
    const leader = await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
    const victim = specs.find((s) => s.name !== leader)!.name;
    const before = await node(victim);
    process.kill(Number(before.runtimeId), 'SIGKILL');
    const after = await waitForState(victim, 'running', (n) => n.runtimeId !== before.runtimeId);
    expect(after.restartCount).toBe(before.restartCount + 1);
    await waitFor(
      `${victim} to answer /health after its restart`,
      async () => ((await health(after)) ? { done: true, value: null } : { done: false, reason: 'no answer' }),
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    const log = readFileSync(join(STATE, 'clusters', CLUSTER, 'nodes', victim, 'node.log'), 'utf8');
    expect(log).toMatch(/exited \(signal SIGKILL\) after [\d.]+ s; restarting in 100 ms/);
  }, 40_000);

  it('an injected kill stays down, the others elect a new leader, and start brings it back', async () => {
    const all = ['manager-1', 'manager-2', 'manager-3'];
    const leader = await waitForLeader(all);
    const pid = Number((await node(leader)).runtimeId);
    const logFile = join(STATE, 'clusters', CLUSTER, 'nodes', leader, 'node.log');
    const logBefore = readFileSync(logFile, 'utf8').length;
    await rt.kill(CLUSTER, leader);
    expect(alive(pid)).toBe(false);
    expect((await node(leader)).state).toBe('killed');
    // The supervisor itself read the marker and left; nobody had to stop it.
    const logAfter = readFileSync(logFile, 'utf8').slice(logBefore);
    expect(logAfter).toMatch(new RegExp(`${leader} killed on purpose \\(signal SIGKILL\\); not restarting`));
    expect(logAfter).not.toMatch(/started manager|SIGTERM: stopping/);
    const rest = all.filter((n) => n !== leader);
    await waitForLeader(rest, leader);
    // Watch it for a while: the supervisor must not undo the kill.
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      const n = await node(leader);
      expect(n.state).toBe('killed');
      expect(n.runtimeId).toBe('');
      await sleep(200);
    }
    expect(processesUsing(join('nodes', leader))).toEqual([]);

    const back = await rt.start(spec(leader));
    expect(back.state).toBe('running');
    expect(back.runtimeId).not.toBe(String(pid));
    await waitFor(
      `${leader} to follow the new leader`,
      async () => {
        const h = await health(spec(leader));
        return h?.leader && h.leader !== leader ? { done: true, value: null } : { done: false, reason: JSON.stringify(h) };
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  }, 60_000);

  it('a kill with SIGTERM lets the node stop gracefully and is not restarted either', async () => {
    const leader = await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
    const victim = specs.find((s) => s.name !== leader)!.name;
    await rt.kill(CLUSTER, victim, { signal: 'TERM' });
    expect((await node(victim)).state).toBe('killed');
    const log = readFileSync(join(STATE, 'clusters', CLUSTER, 'nodes', victim, 'node.log'), 'utf8');
    expect(log).toContain(`dvote-node ${victim}: SIGTERM, stopping`);
    expect(log).toMatch(new RegExp(`${victim} killed on purpose \\(code 0\\); not restarting`));
    // revive (kill --restart-after) brings it back from the stored spec alone.
    expect((await rt.revive(CLUSTER, victim)).state).toBe('running');
  }, 40_000);

  it('pause freezes a node (SIGSTOP) and unpause resumes it', async () => {
    const leader = await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
    const victim = specs.find((s) => s.name !== leader)!.name;
    await waitFor(`${victim} to answer`, async () => ((await health(spec(victim))) ? { done: true, value: null } : { done: false, reason: 'no answer' }), {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    await rt.pause(CLUSTER, victim);
    const paused = await node(victim);
    expect(paused.state).toBe('paused');
    expect(procState(Number(paused.runtimeId))).toBe('T');
    expect(await health(paused, 700)).toBeNull();
    await rt.unpause(CLUSTER, victim);
    expect((await node(victim)).state).toBe('running');
    await waitFor(`${victim} to answer after unpause`, async () => ((await health(paused)) ? { done: true, value: null } : { done: false, reason: 'no answer' }), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    // start() converges a paused node by unpausing it, without a restart.
    await rt.pause(CLUSTER, victim);
    const again = await rt.start(spec(victim));
    expect(again.state).toBe('running');
    expect(again.runtimeId).toBe(paused.runtimeId);
  }, 40_000);

  it('refuses network partitions with the fix', async () => {
    for (const op of [() => rt.disconnect(CLUSTER, 'manager-1'), () => rt.reconnect(CLUSTER, 'manager-1')]) {
      const err = await op().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DvoteError);
      expect(err).toMatchObject({ code: 'RUNTIME_UNSUPPORTED', exitCode: 2 });
      expect((err as Error).message).toContain('network partitions need the docker runtime');
      expect((err as DvoteError).hint).toContain('--pause');
    }
    await expect(rt.kill(CLUSTER, 'manager-9')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('reads the log, its tail, and follows it until aborted', async () => {
    const file = join(STATE, 'clusters', CLUSTER, 'nodes', 'manager-1', 'node.log');
    const all: string[] = [];
    for await (const l of rt.logs(CLUSTER, 'manager-1')) all.push(l);
    expect(all.length).toBeGreaterThan(3);
    expect(all.join('\n')).toContain('dvote-supervisor');
    const tail: string[] = [];
    for await (const l of rt.logs(CLUSTER, 'manager-1', { tail: 3 })) tail.push(l);
    expect(tail).toHaveLength(3);
    const fileLines = readFileSync(file, 'utf8').split('\n');
    const complete = fileLines.slice(0, -1);
    // The last three complete lines (the node may be writing right now, hence the prefix check).
    expect(complete.join('\n')).toContain(tail.join('\n'));

    const ac = new AbortController();
    const seen: string[] = [];
    const follower = (async () => {
      for await (const l of rt.logs(CLUSTER, 'manager-1', { follow: true, tail: 0, signal: ac.signal })) {
        seen.push(l);
        if (seen.includes('follow-me-2')) ac.abort();
      }
    })();
    await sleep(300);
    appendFileSync(file, 'follow-me-1\nfollow-');
    await sleep(300);
    // Polling must not pile up abort listeners on the caller's signal.
    expect(getEventListeners(ac.signal, 'abort').length).toBeLessThanOrEqual(1);
    appendFileSync(file, 'me-2\n');
    await Promise.race([follower, sleep(5_000)]);
    ac.abort();
    await follower;
    expect(seen).toContain('follow-me-1');
    expect(seen).toContain('follow-me-2');
    expect(seen).not.toContain('follow-');
    await expect(async () => {
      for await (const _ of rt.logs(CLUSTER, 'manager-9')) void _;
    }).rejects.toMatchObject({ code: 'NOT_FOUND' });
  }, 20_000);

  it('busyPorts ignores the cluster’s own running nodes and reports anything else', async () => {
    const own = specs.flatMap((s) => [s.ports.http!, s.ports.raft!]);
    expect(await rt.busyPorts(own, { cluster: CLUSTER })).toEqual([]);
    expect(await rt.busyPorts(own)).toEqual([]);
    // For another cluster those same ports are taken.
    expect((await rt.busyPorts(own, { cluster: 'other' })).sort()).toEqual([...own].sort());
    const foreign: Server = createServer();
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', () => r()));
    const taken = (foreign.address() as { port: number }).port;
    const free = await freePort();
    try {
      expect(await rt.busyPorts([taken, free, own[0]!], { cluster: CLUSTER })).toEqual([taken]);
    } finally {
      await new Promise((r) => foreign.close(r));
    }
  });

  it('stop leaves a node exited; remove without volumes keeps its data', async () => {
    const leader = await waitForLeader(['manager-1', 'manager-2', 'manager-3']);
    const victim = specs.find((s) => s.name !== leader)!.name;
    const pid = Number((await node(victim)).runtimeId);
    await rt.stop(CLUSTER, victim, { timeoutMs: 8_000 });
    expect(alive(pid)).toBe(false);
    expect((await node(victim)).state).toBe('exited');
    await rt.remove(CLUSTER, victim);
    expect((await nodes()).has(victim)).toBe(false);
    const data = rt.addressing(CLUSTER).dataDir(victim);
    expect(readdirSync(data).length).toBeGreaterThan(0);
    // A later start reuses the data: it rejoins without a new bootstrap.
    await rt.start(spec(victim));
    await waitForState(victim, 'running');
  }, 40_000);

  it('removeCluster with volumes leaves no process and no folder', async () => {
    await nodes();
    expect(seenPids.size).toBeGreaterThan(6);
    const result = await rt.removeCluster(CLUSTER, { volumes: true });
    expect(result.nodes.sort()).toEqual(['manager-1', 'manager-2', 'manager-3']);
    expect(result.volumes).toHaveLength(3);
    // Only a process of ours counts: a pid may have been reused by then.
    const ours = new Set(processesUsing(WORK));
    for (const pid of seenPids) expect(ours.has(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(join(STATE, 'clusters', CLUSTER))).toBe(false);
    expect(await rt.listClusters()).not.toContain(CLUSTER);
    expect(await rt.listNodes(CLUSTER)).toEqual([]);
    expect(processesUsing(WORK)).toEqual([]);
  }, 40_000);
});
